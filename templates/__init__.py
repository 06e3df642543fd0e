"""The templates of mailflow, installed as the package ``mailflow.templates``.

The folder stays at the top of the checkout; ``pyproject.toml`` maps it
into the package (``[tool.setuptools.package-dir]``), so a wheel carries
it as ``mailflow/templates/`` and an editable install reads it here. This
file only makes the folder a package both ways: read the templates through
``mailflow.notify.render.TEMPLATES``, never by a path from the checkout.
"""
