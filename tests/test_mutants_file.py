"""mutants/mutants.toml stays in step with the code: every planted bug's snippet occurs exactly
once in its file and its tests exist (else `make mutants` would report it stale)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutant_applies_once_and_names_existing_tests():
    mutants = tomllib.loads((ROOT / "mutants" / "mutants.toml").read_text())["mutant"]
    assert len(mutants) >= 30 and len({m["id"] for m in mutants}) == len(mutants)
    for m in mutants:
        assert (ROOT / m["file"]).read_text().count(m["original"]) == 1, m["id"]
        assert m["original"] != m["replacement"] and m["tests"], m["id"]
        for node in m["tests"]:
            path, *names = node.split("::")
            source = (ROOT / path).read_text()
            for name in names:
                assert re.search(rf"def {re.escape(name.split('[')[0])}\(", source), node
