"""intents.summary: one page from a finished build's files."""
from conftest import write_fake_intents
from recbole_saerec.intents.summary import main, summary_markdown


def test_summary_lists_the_build_and_its_most_reaching_intents(tmp_path):
    folder = str(tmp_path / "build")
    write_fake_intents(folder, m=6)
    text = summary_markdown(folder, n_examples=3)
    assert "dataset tiny" in text and "| SAE latents M |" in text.replace("| corpus | texts | items covered ", "|")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "w" in line and "theme" in line]
    assert len(rows) == 3  # the three examples, each with its words and summary
    out = tmp_path / "summary.md"
    main([folder, "--examples=2", f"--out={out}"])
    assert out.read_text().count("theme") == 2
