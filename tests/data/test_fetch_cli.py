"""`recsae data fetch` against a local HTTP server, and the other `recsae data` commands."""

from __future__ import annotations

import hashlib
import http.server
import json
import stat
import threading
import zipfile
from functools import partial

import pytest

from recsae.cli import main
from recsae.data.fetch import fetch
from recsae.errors import ConfigError, DataError


@pytest.fixture
def served_zip(tmp_path):
    """A zip with an ml-100k-like folder, served on 127.0.0.1; yields (url, sha256)."""
    site = tmp_path / "site"
    site.mkdir()
    archive = site / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("toy/u.data", "1\t1\t5\t100\n1\t2\t4\t101\n2\t1\t5\t102\n")
        zf.writestr("toy/README", "toy data\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/toy.zip", digest
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_verifies_and_extracts(served_zip, tmp_path):
    url, digest = served_zip
    cache = tmp_path / "cache"
    target = fetch("toy", cache, url=url, checksum=f"sha256:{digest}")
    assert target == cache / "toy"
    assert (target / "u.data").read_text().startswith("1\t1\t5")
    assert sorted(p.name for p in cache.iterdir()) == ["toy"]  # no temporary files left


def test_fetch_checksum_mismatch_leaves_nothing(served_zip, tmp_path):
    url, _ = served_zip
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("toy", cache, url=url, checksum="sha256:" + "0" * 64)
    assert list(cache.iterdir()) == []


def test_fetch_unknown_name_needs_url_and_checksum(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        fetch("nope", tmp_path)
    with pytest.raises(ConfigError, match="bad checksum"):
        fetch("ml-100k", tmp_path, checksum="sha1:abc")


def test_cli_fetch_then_stats_on_the_fetched_folder(served_zip, tmp_path, capsys):
    url, digest = served_zip
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "fetch", "toy", "--cache-dir", str(cache), "--url", url, "--checksum", digest])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == str(cache / "toy")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "stats", "--dataset", str(cache / "toy"), "--k-core", "0", "--json"])
    assert exit_info.value.code == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_interactions"] == 3 and stats["counts"]["raw"]["users"] == 2


def test_cli_fetch_mismatch_exits_2(served_zip, tmp_path, capsys):
    url, _ = served_zip
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "fetch", "toy", "--cache-dir", str(tmp_path), "--url", url, "--checksum", "0" * 64])
    assert exit_info.value.code == 2
    assert "checksum mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["list"], ["stats"], ["fetch"]])
def test_every_data_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", *command, "--help"])
    assert exit_info.value.code == 0
    assert "Usage" in capsys.readouterr().out


def test_cli_stats_ml100k_reports_raw_and_filtered_counts(data_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "stats", "--dataset", "ml-100k", "--data-root", str(data_root)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "raw             100,000      943    1,682" in out
    assert "rating>=4" in out and "5-core" in out


def test_cli_list_shows_names_and_formats(capsys):
    with pytest.raises(SystemExit):
        main(["data", "list"])
    out = capsys.readouterr().out
    for word in ("synthetic", "ml-100k", "ml-1m", "ml-latest-small", "rechorus", "recbole", "table"):
        assert word in out


def test_fetch_unreachable_url_is_a_data_error_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match="download failed"):
        fetch("toy", tmp_path, url="http://127.0.0.1:9/toy.zip", checksum="0" * 64, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_archive_paths_outside_the_target(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "evil.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    digest = hashlib.sha256((site / "evil.zip").read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="unsafe path"):
        fetch("evil", cache, url=(site / "evil.zip").as_uri(), checksum=digest)
    assert list(cache.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_a_fetched_archive_without_a_top_folder_follows_the_umask(tmp_path, umask_022):
    # the extracted content is the staging folder itself, renamed into place
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "flat.zip", "w") as zf:
        zf.writestr("u.data", "1\t1\t5\t100\n")
    digest = hashlib.sha256((site / "flat.zip").read_bytes()).hexdigest()
    target = fetch("flat", tmp_path / "cache", url=(site / "flat.zip").as_uri(), checksum=digest)
    assert (target / "u.data").is_file() and stat.S_IMODE(target.stat().st_mode) == 0o755
