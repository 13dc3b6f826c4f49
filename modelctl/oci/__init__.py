"""OCI registries: push a lock as a CNCF ModelPack artifact, sync a lock from one.

Modules, lowest first: :mod:`.reference` (``oci://`` references, pure), :mod:`.modelpack`
(the artifact's JSON documents, pure), :mod:`.auth` (credentials and challenges),
:mod:`.registry` (the distribution-spec HTTP client), :mod:`.push` and :mod:`.pull`.
"""
