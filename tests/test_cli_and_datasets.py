"""The command line and the packaged data sets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cases import load_case

import lmeformula as lmf
from lmeformula.cli import main


@pytest.mark.slow
def test_datasets_have_r_types() -> None:
    names = lmf.datasets.list()
    for required in ("sleepstudy", "Dyestuff", "Dyestuff2", "Penicillin", "Pastes", "cake",
                     "InstEval", "VerbAgg", "Machines"):
        assert required in names
    cake = lmf.datasets.load("cake")
    assert cake["temperature"].cat.ordered
    assert list(cake["temperature"].cat.categories) == ["175", "185", "195", "205", "215", "225"]
    machines = lmf.datasets.load("Machines")
    assert list(machines["Worker"].cat.categories) == ["6", "2", "4", "1", "3", "5"]
    inst = lmf.datasets.load("InstEval")
    assert inst.shape == (73421, 7)
    assert lmf.datasets.describe("sleepstudy")["package"] == "lme4"


def test_load_returns_a_fresh_copy() -> None:
    a = lmf.datasets.load("sleepstudy")
    a.loc[1, "Reaction"] = -1
    assert lmf.datasets.load("sleepstudy").loc[1, "Reaction"] == pytest.approx(249.56)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        lmf.datasets.load("nosuch")


def test_cli_lformula_prints_structures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lformula", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "$Ztlist$`Days | Subject`" in out
    assert '36 x 180 sparse Matrix of class "dgCMatrix"' in out
    assert "308 1 1 1 1 1 1 1 1 1 1 . ." in out


def test_cli_fit_prints_lme4_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out.rstrip("\n")
    assert out == load_case("sleepstudy_slope")["fit"]["summary_text"]


def test_cli_fit_json_and_csv(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dye.csv"
    lmf.datasets.load("Dyestuff").to_csv(path, index=False)
    assert main(["fit", "Yield ~ 1 + (1 | Batch)", "--data", str(path), "--ml", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["REML"] is False
    assert result["deviance"] == pytest.approx(327.3270599, abs=1e-5)


def test_cli_errors_are_messages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "y ~ x + (1 | g)", "--data", "sleepstudy"]) == 2
    assert "object 'y' not found" in capsys.readouterr().err
    assert main(["fit", "y ~ x + (1 | g)", "--data", "nosuch.csv"]) == 2


def test_seed_question_three_subjects() -> None:
    """The question that started the project: Zt of the three-subject sleepstudy."""
    df = lmf.datasets.load("sleepstudy")
    sub = df[df.Subject.isin(["309", "330", "371"])].reset_index(drop=True)
    pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sub)
    term = pf.reTrms.terms[0]
    assert term.J.shape == (30, 3) and term.X.shape == (30, 2)
    zt = pf.reTrms.Ztlist["Days | Subject"].toarray()
    assert zt.shape == (6, 30)
    assert zt[0, :10].tolist() == [1.0] * 10 and zt[1, :10].tolist() == list(range(10))
    assert isinstance(pf.reTrms.Xi["Days | Subject"], pd.DataFrame)
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sub)
    b = lmf.getME(m, "b")
    assert b == pytest.approx([-44.157, -2.412, 32.863, -0.400, 11.294, 2.812], abs=2e-3)


@pytest.mark.slow
def test_cli_output_into_a_closed_pipe_stops_quietly() -> None:
    # `python -m lmeformula fit ... | head -1`: the reader is gone before the summary is
    # written; the command must end without a BrokenPipeError traceback
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "lmeformula", "fit", "Reaction ~ Days + (Days | Subject)",
         "--data", "sleepstudy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has imported anything, so its first write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err
