"""The shipped model cards: no path of the machine that built them, and a short `edgeface info`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgeface.cli import main

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted((REPO / "models").glob("*.json"))
# an absolute POSIX path or a Windows drive path anywhere in a string value
ABSOLUTE = re.compile(r'"(/|[A-Za-z]:\\\\)|[\s:=(](/(home|work|tmp|root|Users|mnt|opt|srv|data)/)')


@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_card_has_no_absolute_path(card):
    text = card.read_text()
    json.loads(text)
    hit = ABSOLUTE.search(text)
    assert hit is None, f"{card.name}: absolute path near {text[max(0, hit.start() - 40):hit.end() + 40]!r}"


@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_info_fits_in_15_lines_and_json_has_the_whole_card(card, capsys):
    model = card.with_suffix(".tflite")
    if not model.is_file():
        pytest.skip(f"{model.name} not shipped")
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert 5 <= len(out) <= 15 and "licence: " in "\n".join(out), out
    assert main(["info", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["card"] == json.loads(card.read_text())
