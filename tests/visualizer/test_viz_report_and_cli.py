"""The static report (also written by every lab run), the settings and the `tangle viz` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from viz_helpers import write_lab_folder

from learning_tangle.cli import main
from peer.config import LabSettings
from peer.lab.report import write_outputs
from peer.lab.runner import run_lab
from visualizer.config import DEFAULT_PEER, VizSettings
from visualizer.report import write_lab_report


def _is_self_contained(page: str) -> bool:
    """Bokeh's JavaScript inline and nothing fetched from elsewhere, so the file opens offline."""
    external = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(?!data:)[^\"]+\"", page)
    return not external and "Bokeh" in page and len(page) > 500_000


def test_report_is_one_offline_file(lab_folder: Path) -> None:
    path = write_lab_report(lab_folder)
    assert path == lab_folder / "report.html"
    page = path.read_text()
    assert _is_self_contained(page)
    assert "FedAvg" in page
    count = len(json.loads((lab_folder / "tangle.json").read_text())["nodes"])
    assert f'data-count=\\"{count}\\"' in page  # the header, inside the document's JSON


@pytest.mark.slow
def test_every_lab_run_writes_a_report(tmp_path: Path) -> None:
    settings = LabSettings(peers=3, rounds=2, workers=1, progress=False, out=tmp_path / "run")
    paths = write_outputs(run_lab(settings), settings.out, {"report": write_lab_report})
    assert paths["report"] == tmp_path / "run" / "report.html"
    assert _is_self_contained(paths["report"].read_text())


def test_settings_defaults_and_errors(tmp_path: Path) -> None:
    settings = VizSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    assert settings.peer_urls == [DEFAULT_PEER]
    assert VizSettings(dns="peers.learning-tangle").peer_urls == []
    assert VizSettings(peers=["http://a:8000/"]).peers == ["http://a:8000"]
    with pytest.raises(ValueError, match="must start with http"):
        VizSettings(peers=["a:8000"])
    with pytest.raises(ValueError, match=r"no tangle\.json"):
        VizSettings(lab=[tmp_path])
    (tmp_path / "tangle.json").write_text("{}")
    with pytest.raises(ValueError, match="do not combine"):
        VizSettings(lab=[tmp_path], peers=["http://a:8000"])


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIZ_DNS", "peers.learning-tangle.svc.cluster.local")
    monkeypatch.setenv("VIZ_DNS_PORT", "8001")
    settings = VizSettings()
    assert (settings.dns, settings.dns_port) == ("peers.learning-tangle.svc.cluster.local", 8001)


def test_cli_names_the_bad_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["viz", "--lab", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no tangle.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["viz", "--help"])
    assert "--poll-interval" in capsys.readouterr().out


def test_report_of_one_run_and_of_several(lab_folder: Path, tmp_path: Path) -> None:
    other = write_lab_folder(tmp_path / "other", transactions=40)
    summary = json.loads((other / "summary.json").read_text())
    summary["config"]["poison"] = "labelflip"
    (other / "summary.json").write_text(json.dumps(summary))
    main(["report", str(lab_folder), str(other), "-o", str(tmp_path / "both.html")])
    page = (tmp_path / "both.html").read_text()
    assert _is_self_contained(page)
    assert "settings that differ" in page
    assert "labelflip" in page
    main(["report", str(lab_folder), "-o", str(tmp_path / "one.html")])
    assert "export CSV" in (tmp_path / "one.html").read_text()
