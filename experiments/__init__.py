"""The bundled YAML experiments; a package only so that they ship inside the wheel (``snnlab run NAME``)."""
