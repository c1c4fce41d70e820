"""Custom strategies and scorers are plug-ins registered through entry points, never code in a task file."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from advisor.scoring import score
from advisor.task import TaskError, load_task
from strategies import Context, registry
from tests.conftest import write_task

PLUGIN = '''
from strategies.base import Strategy, fewshot_messages

class Terse(Strategy):
    name = "terse"
    description = "a one-line instruction (plug-in)"
    complexity = 0
    family = "prompting"

    def messages(self, text, drop=0):
        return fewshot_messages("Answer in one line.", [], text)

def shouting(answer, example):
    return float(answer.isupper())
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    (site / "advisor_demo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "advisor_demo_plugin.py").write_text(PLUGIN)
    (site / "advisor_demo_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: advisor-demo-plugin\nVersion: 0.1\n")
    (site / "advisor_demo_plugin-0.1.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""
        [advisor.strategies]
        terse = advisor_demo_plugin:Terse
        [advisor.scorers]
        shouting = advisor_demo_plugin:shouting
    """))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_strategy_becomes_a_row_and_plugin_scorer_scores(installed_plugin, tmp_path):
    assert "terse" in registry()
    root = write_task(tmp_path / "task", scoring={"method": "shouting"}, strategies=["terse", "few-shot"])
    task = load_task(root)
    assert score("HELLO THERE", task.eval[0], task.spec.scoring) == 1.0
    assert score("hello", task.eval[0], task.spec.scoring) == 0.0


def test_unknown_method_is_an_error_and_task_files_cannot_name_code(tmp_path):
    root = write_task(tmp_path / "a", scoring={"method": "os.system"})
    with pytest.raises(TaskError, match=r"scoring.method.*unknown scoring method 'os.system'"):
        load_task(root)
    root = write_task(tmp_path / "b", scoring={"method": "contains", "by_tag": {"style": "shouting"}})
    with pytest.raises(TaskError, match=r"scoring.by_tag.style.*unknown scoring method 'shouting'"):
        load_task(root)
    # YAML tags that construct Python objects are refused by the safe loader.
    root = write_task(tmp_path / "c")
    spec = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(spec + "seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(TaskError, match="invalid YAML"):
        load_task(root)


def readme_example() -> str:
    """The worked example of a new row, as the README shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- example: strategies/hyde.py", 1)[1].split("```python\n", 1)[1]
    return block.split("```", 1)[0]


def test_the_readme_row_example_is_one_short_file_that_runs(tmp_path, monkeypatch, generator, embedder):
    """The README's HyDE row, installed as a plug-in, is a row that retrieves with a draft and prices it."""
    code = readme_example()
    assert len(code.splitlines()) < 60
    site = tmp_path / "site"
    info = site / "advisor_hyde_example-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "advisor_hyde_example.py").write_text(code)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: advisor-hyde-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[advisor.strategies]\nhyde = advisor_hyde_example:HyDE\n")
    monkeypatch.syspath_prepend(str(site))
    rows = registry()
    assert "hyde" in rows
    task = load_task(write_task(tmp_path / "task"))
    ctx = Context(task, task.spec.seed, generator, lambda: embedder, tmp_path)
    hyde, rag = rows["hyde"](ctx), rows["rag"](ctx)
    hyde.prepare()
    rag.prepare()
    question = [task.eval[0].input]
    drafted, plain = hyde.answer(question)[0], rag.answer(question)[0]
    assert drafted.sources and set(drafted.sources) <= {d.id for d in task.documents}
    draft = hyde.drafts[question[0]]
    assert draft.completion_tokens > 0
    # The draft's tokens are paid on every request, so they are counted in the row's answer.
    assert drafted.prompt_tokens == len(generator.chat_ids(hyde.messages(question[0]))) + draft.prompt_tokens
    assert drafted.completion_tokens > draft.completion_tokens  # the answer's own tokens (at least its end) on top
    assert plain.prompt_tokens == len(generator.chat_ids(rag.messages(question[0])))
