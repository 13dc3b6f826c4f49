"""Developer scripts that live beside the package, not in the wheel: ``just demo``
(:mod:`scripts.demo`) and the builder of the real model assets the tests and the demo
serve from the local Hub (:mod:`scripts.assets`)."""
