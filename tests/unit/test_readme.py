"""README.md must stay true: its settings reference is the one the settings model generates."""

from pathlib import Path

from mailstead.__main__ import readme_with_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_reference_is_current():
    text = README.read_text()
    assert readme_with_reference(text) == text, (
        "README.md's settings reference is out of date: run `.venv/bin/python -m mailstead settings-reference "
        "--write README.md`"
    )


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make lab" in text and "make test" in text
