"""The runtime stage's application: opens the locked models, offline.

``modelctl.runtime.open_lock()`` reads the lockfile ($MODELCTL_LOCK) and hands out paths
in the tree ($MODELCTL_TARGET) only for files of the lock that are present with the locked
size (``MODELCTL_VERIFY=full`` hashes them too). It imports no HTTP client: a missing file
is an error naming ``modelctl sync``, never a download.
"""

from __future__ import annotations

import os
import sys

from modelctl.runtime import NotSyncedError, open_lock


def main() -> int:
    verify = "full" if os.environ.get("MODELCTL_VERIFY") == "full" else "fast"
    try:
        models = open_lock(verify=verify)
        for asset in models.assets():
            for name, path in sorted(models.files(asset).items()):
                print(f"{asset}/{name}: {path} ({path.stat().st_size} bytes)")
    except NotSyncedError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    # A real application loads its models here, for example:
    #   llm = models.load_llama("llm", n_ctx=2048)
    #   tts = models.load_kokoro("tts")
    #   vad = models.load_onnx("vad")
    return 0


if __name__ == "__main__":
    sys.exit(main())
