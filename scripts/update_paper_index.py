"""Rewrite the generated parts of paper_figures/README.md from the committed CSVs and results:
the claims table (giftlab.figures.claims.claims) and the list under "## Every quoted number"
(quoted_lines). The prose around them is left as written (and says which numbers it quotes).

    python scripts/update_paper_index.py [paper_figures]

Run after new results land (scripts/campaign.py copies them); tests/test_paper_figures_text.py
checks that every generated line stands verbatim in the README.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _replace_block(lines: list[str], start: int, is_part, new: list[str]) -> list[str]:
    end = start
    while end < len(lines) and is_part(lines[end]):
        end += 1
    return lines[:start] + new + lines[end:]


def update(folder: Path) -> Path:
    from giftlab.figures.claims import claims, quoted_lines

    readme = folder / "README.md"
    lines = readme.read_text().splitlines()
    table = claims(folder)
    head = next(i for i, x in enumerate(lines) if x.startswith("| paper claim |"))
    lines = _replace_block(lines, head, lambda x: x.startswith("|"), table)
    section = next(i for i, x in enumerate(lines) if x.strip() == "## Every quoted number")
    first = next(i for i in range(section + 1, len(lines)) if lines[i].startswith("- "))
    lines = _replace_block(lines, first, lambda x: x.startswith("- "), quoted_lines(folder))
    readme.write_text("\n".join(lines) + "\n")
    return readme


if __name__ == "__main__":
    print(f"rewrote {update(Path(sys.argv[1] if len(sys.argv) > 1 else 'paper_figures'))}")
