"""Write the HTML template `dvc plots show` and `dvc plots diff` use, with vega, vega-lite and
vega-embed inlined, so the page draws its charts without internet.

DVC's own page loads these three scripts from a CDN; offline (a classroom, a train) it stays blank.
The versions are DVC's own. Needs `npm` (it fetches the packages from the npm registry):

    python tools/offline_plots.py --output .dvc/plots/offline.html
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

# The scripts dvc-render's page loads, at the versions it names.
PACKAGES = {
    "vega@5.20.2": "package/build/vega.min.js",
    "vega-lite@5.2.0": "package/build/vega-lite.min.js",
    "vega-embed@6.18.2": "package/build/vega-embed.min.js",
}

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {versions}: inlined so the page needs no network. -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fetch_scripts(workdir: Path) -> dict[str, str]:
    """Each package's minified browser build, by package spec, via `npm pack`."""
    scripts = {}
    for spec, member in PACKAGES.items():
        name = subprocess.run(
            ["npm", "pack", "--silent", spec],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        with tarfile.open(workdir / name) as archive:
            scripts[spec] = archive.extractfile(member).read().decode()
    return scripts


def page(scripts: dict[str, str]) -> str:
    for spec, code in scripts.items():
        if "</script" in code or "{plot_divs}" in code:
            raise ValueError(f"{spec} cannot be inlined as it is")
    tags = "\n".join(f"    <script>\n{code}\n    </script>" for code in scripts.values())
    return PAGE.format(versions=", ".join(scripts), scripts=tags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        html = page(fetch_scripts(Path(tmp)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(html)
    print(f"wrote {args.output} ({len(html) // 1024} KiB)")


if __name__ == "__main__":
    main()
