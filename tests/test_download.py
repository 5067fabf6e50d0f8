"""Tests for download_data and common.download against a local HTTP server (offline, fast)."""
from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from going_modular import data_setup
from going_modular.common import download
from going_modular.data_setup import DownloadError, download_data, download_file
from going_modular.common.settings import DATA_DIR_ENV

DATASET_FILES = {
    "train/pizza/1.jpg": b"pizza-train-bytes",
    "train/steak/2.jpg": b"steak-train-bytes",
    "test/pizza/3.jpg": b"pizza-test-bytes",
}


# ------------------------------------------------------------------------------------- local HTTP server


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/zip"
    truncate: bool = False  # announce the full Content-Length, send half the body, close the connection


class LocalServer:
    """Serves chosen bytes at chosen paths on 127.0.0.1 and records every request it receives."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                route = owner.routes.get(self.path, Route(b"no such file", status=404, content_type="text/plain"))
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body[: len(route.body) // 2] if route.truncate else route.body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    def serve(self, name: str, body: bytes, **route: object) -> str:
        """Answer requests for /name with body (and the given status etc.); return the URL."""
        self.routes[f"/{name}"] = Route(body, **route)
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under directory as {relative posix path: bytes}."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def everything_under(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*")) if directory.exists() else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------------------------- download_data


def test_good_zip_is_extracted_and_the_path_returned(server, data_dir):
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))

    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert path == data_dir / "pizza_steak_sushi"
    assert tree(path) == DATASET_FILES
    assert [p.name for p in data_dir.iterdir()] == ["pizza_steak_sushi"]  # zip and scratch folders are gone


def test_second_call_skips_without_a_request(server, data_dir, capsys):
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))
    download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)
    assert len(server.requests) == 1

    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert path == data_dir / "pizza_steak_sushi"
    assert len(server.requests) == 1
    assert "skipping download" in capsys.readouterr().out


def test_existing_empty_folder_does_not_count_as_downloaded(server, data_dir):
    (data_dir / "pizza_steak_sushi").mkdir(parents=True)
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))

    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert tree(path) == DATASET_FILES


def test_destination_that_is_a_file_is_an_error(server, data_dir):
    data_dir.mkdir()
    (data_dir / "pizza_steak_sushi").write_text("not a folder")
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))

    with pytest.raises(FileExistsError, match="is not a folder"):
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)
    assert server.requests == []


def test_single_top_level_folder_named_like_destination_is_not_nested_twice(server, data_dir):
    nested = {f"pizza_steak_sushi/{name}": content for name, content in DATASET_FILES.items()}
    url = server.serve("pizza_steak_sushi.zip", make_zip(nested))

    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert tree(path) == DATASET_FILES


def test_single_top_level_folder_with_another_name_is_kept(server, data_dir):
    url = server.serve("archive.zip", make_zip({"images/a.jpg": b"a"}))

    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert tree(path) == {"images/a.jpg": b"a"}


@pytest.mark.parametrize("remove_source", [True, False])
def test_remove_source(server, data_dir, remove_source):
    archive = make_zip(DATASET_FILES)
    url = server.serve("pizza_steak_sushi.zip", archive)

    download_data(source=url, destination="pizza_steak_sushi", remove_source=remove_source, data_dir=data_dir)

    kept = data_dir / "pizza_steak_sushi.zip"
    if remove_source:
        assert not kept.exists()
    else:
        assert kept.read_bytes() == archive
    assert sorted(p.name for p in data_dir.iterdir()) == ["pizza_steak_sushi"] + ([] if remove_source else [kept.name])


def test_right_checksum_is_accepted(server, data_dir):
    archive = make_zip(DATASET_FILES)
    url = server.serve("pizza_steak_sushi.zip", archive)

    checksum = hashlib.sha256(archive).hexdigest().upper()  # either case is accepted

    path = download_data(source=url, destination="pizza_steak_sushi", sha256=checksum, data_dir=data_dir)

    assert tree(path) == DATASET_FILES


def test_wrong_checksum_is_refused_and_leaves_nothing(server, data_dir):
    archive = make_zip(DATASET_FILES)
    url = server.serve("pizza_steak_sushi.zip", archive)
    expected = "0" * 64

    with pytest.raises(ValueError, match="Checksum mismatch") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", sha256=expected, data_dir=data_dir)

    assert expected in str(excinfo.value)
    assert hashlib.sha256(archive).hexdigest() in str(excinfo.value)
    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []


def test_damaged_zip_is_refused_and_leaves_nothing(server, data_dir):
    content = b"A" * 200
    archive = make_zip({"train/pizza/1.jpg": content})
    damaged = archive.replace(content, b"B" * len(content))  # same layout, wrong CRC
    url = server.serve("pizza_steak_sushi.zip", damaged)

    with pytest.raises(ValueError, match="is damaged") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []


def test_empty_zip_is_refused_and_leaves_nothing(server, data_dir):
    url = server.serve("pizza_steak_sushi.zip", make_zip({}))

    with pytest.raises(ValueError, match="is empty") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>",
        make_zip(DATASET_FILES)[:100],  # the start of a zip, without its central directory
    ],
    ids=["html-error-page", "truncated-zip"],
)
def test_response_that_is_not_a_zip_is_refused(server, data_dir, body):
    url = server.serve("pizza_steak_sushi.zip", body, content_type="text/html")

    with pytest.raises(ValueError, match="did not send a zip archive") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert url in str(excinfo.value)
    assert repr(body[:20])[2:-1] in str(excinfo.value)  # shows what arrived instead
    assert everything_under(data_dir) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_status_names_url_and_status(server, data_dir, status):
    url = server.serve("pizza_steak_sushi.zip", b"oops", status=status, content_type="text/plain")

    with pytest.raises(DownloadError, match=f"HTTP status {status}") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []


@pytest.mark.parametrize("member", ["../../../evil.txt", "/tmp/absolute-evil.txt", "C:/evil.txt", "..\\..\\evil.txt"])
def test_member_outside_destination_is_refused_and_nothing_written(server, tmp_path, data_dir, member):
    url = server.serve("pizza_steak_sushi.zip", make_zip({"train/pizza/1.jpg": b"ok", member: b"evil"}))
    data_dir.mkdir()
    before = everything_under(tmp_path)

    with pytest.raises(ValueError, match="Refusing to extract archive member") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert repr(member) in str(excinfo.value)
    assert everything_under(data_dir) == []
    assert everything_under(tmp_path) == before
    assert not Path("/tmp/absolute-evil.txt").exists()


def test_interrupted_download_leaves_nothing_and_a_retry_succeeds(server, data_dir):
    archive = make_zip(DATASET_FILES)
    url = server.serve("pizza_steak_sushi.zip", archive, truncate=True)

    with pytest.raises(ConnectionError, match="broke off") as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)
    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []

    server.serve("pizza_steak_sushi.zip", archive)
    path = download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)
    assert tree(path) == DATASET_FILES


def test_keyboard_interrupt_mid_stream_leaves_nothing(server, data_dir, monkeypatch):
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))
    left_mid_download: list[Path] = []
    original_iter_content = requests.Response.iter_content

    def interrupted_iter_content(self, *args, **kwargs):
        yield next(original_iter_content(self, *args, **kwargs))
        left_mid_download.extend(everything_under(data_dir))
        raise KeyboardInterrupt

    monkeypatch.setattr(requests.Response, "iter_content", interrupted_iter_content)

    with pytest.raises(KeyboardInterrupt):
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert any(p.name.endswith(".part") for p in left_mid_download)  # the cleanup below had work to do
    assert everything_under(data_dir) == []


def test_offline_gives_connection_error_with_url_and_manual_steps(data_dir):
    url = f"http://127.0.0.1:{free_port()}/pizza_steak_sushi.zip"  # nothing listens there

    with pytest.raises(ConnectionError) as excinfo:
        download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    message = str(excinfo.value)
    assert url in message
    assert str(data_dir / "pizza_steak_sushi") + "/train/<class name>/<image>" in message
    assert DATA_DIR_ENV in message
    assert everything_under(data_dir) == []


def test_server_that_never_answers_times_out_as_connection_error(data_dir, monkeypatch):
    monkeypatch.setattr(download, "_TIMEOUT_S", (0.5, 0.5))
    with socket.socket() as silent:  # accepts connections (into its backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/pizza_steak_sushi.zip"

        with pytest.raises(ConnectionError, match="timeout") as excinfo:
            download_data(source=url, destination="pizza_steak_sushi", data_dir=data_dir)

    assert url in str(excinfo.value)
    assert everything_under(data_dir) == []


def test_data_dir_defaults_to_the_environment_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    url = server.serve("pizza_steak_sushi.zip", make_zip(DATASET_FILES))

    path = download_data(source=url, destination="pizza_steak_sushi")

    assert path == (tmp_path / "elsewhere" / "pizza_steak_sushi").resolve()
    assert tree(path) == DATASET_FILES


# --------------------------------------------------------------------------------------------- download_file


def test_download_file_saves_the_file_and_skips_the_second_time(server, tmp_path, capsys):
    url = server.serve("04-pizza-dad.jpeg", b"\xff\xd8 jpeg bytes", content_type="image/jpeg")
    path = tmp_path / "data" / "04-pizza-dad.jpeg"

    assert download_file(url, path) == path
    assert path.read_bytes() == b"\xff\xd8 jpeg bytes"
    assert download_file(url, path) == path

    assert len(server.requests) == 1
    assert "skipping download" in capsys.readouterr().out
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_download_file_checks_the_checksum(server, tmp_path):
    body = b"\xff\xd8 jpeg bytes"
    url = server.serve("04-pizza-dad.jpeg", body, content_type="image/jpeg")
    path = tmp_path / "04-pizza-dad.jpeg"

    with pytest.raises(ValueError, match="Checksum mismatch") as excinfo:
        download_file(url, path, sha256="f" * 64)
    assert hashlib.sha256(body).hexdigest() in str(excinfo.value)
    assert everything_under(tmp_path) == []

    assert download_file(url, path, sha256=hashlib.sha256(body).hexdigest()).read_bytes() == body


def test_download_file_interrupted_leaves_no_partial_file(server, tmp_path):
    url = server.serve("04-pizza-dad.jpeg", b"x" * 10_000, content_type="image/jpeg", truncate=True)
    path = tmp_path / "04-pizza-dad.jpeg"

    with pytest.raises(ConnectionError, match="broke off"):
        download_file(url, path)

    assert everything_under(tmp_path) == []


def test_download_file_offline_says_where_to_save_the_file(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/04-pizza-dad.jpeg"
    path = tmp_path / "04-pizza-dad.jpeg"

    with pytest.raises(ConnectionError) as excinfo:
        download_file(url, path)

    assert url in str(excinfo.value)
    assert f"save it as {path}" in str(excinfo.value)
    assert not path.exists()


def test_the_names_learners_use_are_re_exported_by_data_setup():
    assert data_setup.download_file is download.download_file
    assert data_setup.DownloadError is download.DownloadError and data_setup.DataError is download.DataError
