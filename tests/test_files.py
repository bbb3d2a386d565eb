"""The atomic writer and the destination checks: nothing microgd writes can cost the user a file."""

import contextlib
import errno
import io
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from microgd.files import DestinationError, check_distinct, check_folder, check_writable, write_atomic


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_existing_files_permission_bits_are_kept(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    write_atomic(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o600


def test_a_new_file_gets_the_umasks_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.json", "x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "new.json") == 0o640


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.json"
    target.write_text("old")
    link = tmp_path / "model.json"
    link.symlink_to(target)
    assert write_atomic(link, "new") == link
    assert link.is_symlink() and target.read_text() == "new"
    assert not [p for p in (tmp_path / "real").iterdir() if p.name.startswith(".microgd-")]


def test_the_longest_legal_name_works(tmp_path):
    name = "m" * 250 + ".json"  # 255 characters: the limit; a temporary named after it would not fit
    write_atomic(tmp_path / name, "x")
    assert (tmp_path / name).read_text() == "x"


def test_a_temporary_left_by_a_killed_writer_is_removed_on_the_next_save(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.send_signal(signal.SIGKILL)
    child.wait()
    stale = tmp_path / f".microgd-{child.pid}-0123abcd.tmp"
    stale.write_text("half a model")
    live = tmp_path / f".microgd-{os.getppid()}-0123abcd.tmp"  # a running process's: never touched
    live.write_text("being written")
    other = tmp_path / ".model.json.1234.tmp"  # not of our naming: never touched
    other.write_text("someone else's")
    write_atomic(tmp_path / "model.json", "x")
    assert not stale.exists() and live.exists() and other.exists()


def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.json"
    path.write_text("old")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


@pytest.mark.parametrize("make, pattern", [
    (lambda tmp: tmp, r"is a folder; give a file name"),
    (lambda tmp: tmp / "missing" / "m.json", r"folder '.*missing' does not exist"),
    (lambda tmp: "/proc/microgd.json", r"'/proc/microgd.json' cannot be written"),
])
def test_unwritable_destinations_are_found_before_the_work(tmp_path, make, pattern):
    with pytest.raises(DestinationError, match=pattern):
        check_writable(make(tmp_path), "--save")
    assert list(tmp_path.iterdir()) == []  # no probe left behind


def test_check_writable_names_the_path_as_typed_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert check_writable("sub/../model.json", "--save") == Path("sub/../model.json")
    (tmp_path / "sub").rmdir()
    with pytest.raises(DestinationError, match=r"^--out 'nowhere/p.csv': folder '.*nowhere' does not exist$"):
        check_writable("nowhere/p.csv", "--out")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "data.csv", tmp_path / "link.csv")
    os.link(tmp_path / "data.csv", tmp_path / "hard.csv")
    for spelled in ("data.csv", "./data.csv", "sub/../data.csv", str(tmp_path / "data.csv"), "link.csv", "hard.csv"):
        with pytest.raises(DestinationError, match=rf"--save '{spelled}' is the same file as DATA 'data.csv'"):
            check_distinct([("DATA", "data.csv")], [("--save", spelled)])
    with pytest.raises(DestinationError, match=r"--plot 'm.json' is the same file as --save 'm.json'"):
        check_distinct([("DATA", "data.csv")], [("--save", "m.json"), ("--plot", "m.json")])
    check_distinct([("MODEL", "m.json"), ("DATA", "data.csv")], [("--out", "p.csv")])  # distinct: fine


def test_a_folder_destination_may_exist_or_be_made_but_never_be_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a\n")
    assert check_folder(".", "--out") == Path(".")
    assert check_folder("new/deeper", "--out") == Path("new/deeper")  # mkdir makes both
    for typed, pattern in [("data.csv", r"^--out 'data.csv' is a file; give a folder$"),
                           ("data.csv/sub", r"^--out 'data.csv/sub' cannot be made: '.*data.csv' is a file"),
                           ("/proc/pictures", r"^--out '/proc/pictures' cannot be written: "),
                           ("/proc", r"^--out '/proc' cannot be written: ")]:
        with pytest.raises(DestinationError, match=pattern):
            check_folder(typed, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # nothing made, no probe left


def test_a_failed_write_names_the_path_asked_for_never_the_temporary(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as caught:
        write_atomic("/proc/microgd.json", "x")
    assert caught.value.filename == "/proc/microgd.json" and ".microgd-" not in str(caught.value)
    path = tmp_path / "model.json"
    path.write_text("old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"No space left on device: '.*model.json'") as caught:
        write_atomic(path, "new")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.json"]


# -- a shared folder (sticky bit, as /tmp): only a file's owner may replace it --

OTHER_UID = 65534  # "nobody": any uid will do, root may become it without a passwd entry
as_another_user_is_possible = hasattr(os, "fork") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not as_another_user_is_possible and not os.environ.get("CI"),
                                reason="acting as another user needs root (and fork)")


def as_another_user(work):
    """``work()`` run in a forked child as OTHER_UID (the interpreter and the imported modules are already in
    memory: the child may not be able to read them from disk); its result, or the error it raised, as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            result = ("returned", work())
        except BaseException as error:
            result = ("raised", f"{type(error).__name__}: {error}")
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(result, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return pickle.loads(answer)


@pytest.fixture
def shared_folder():
    """A folder everyone may write in, with the sticky bit (mode 1777, as /tmp), holding a world-writable file
    of root's; beside the system's temporary folder, since pytest's own are closed to other users."""
    folder = Path(tempfile.mkdtemp(prefix="microgd-shared-"))
    os.chmod(folder, 0o1777)
    theirs = folder / "model.json"
    theirs.write_text("their model")
    os.chmod(theirs, 0o666)
    yield folder
    shutil.rmtree(folder)


@needs_root
def test_a_file_of_another_user_in_a_sticky_folder_is_refused_before_the_work(shared_folder):
    theirs = shared_folder / "model.json"
    assert os.access(theirs, os.W_OK)  # world-writable: yet only its owner may replace it here
    assert as_another_user(lambda: check_writable(theirs, "--save")) == (
        "raised", f"DestinationError: --save '{theirs}' belongs to another user in a shared folder (sticky bit, "
                  "as /tmp): only its owner may replace it; choose another name")
    assert theirs.read_text() == "their model" and os.listdir(shared_folder) == ["model.json"]


@needs_root
def test_a_new_file_or_ones_own_file_in_a_sticky_folder_is_fine(shared_folder):
    mine = shared_folder / "mine.json"

    def save_twice():
        check_writable(mine, "--save")
        write_atomic(mine, "first")
        check_writable(mine, "--save")
        return write_atomic(mine, "second").read_text()

    assert as_another_user(save_twice) == ("returned", "second")
    assert os.stat(mine).st_uid == OTHER_UID
    check_writable(mine, "--save")  # root may replace anyone's file (CAP_FOWNER)


@needs_root
def test_train_save_onto_another_users_file_in_a_sticky_folder_trains_nothing_and_loses_nothing(shared_folder):
    from microgd.app import cli

    data = shared_folder / "data.csv"
    data.write_text("x,y\n0,0\n1,1\n2,4\n")
    args = ["train", str(data), "--target", "y", "--epochs", "1"]
    assert cli.main([*args, "--save", str(shared_folder / "root.json")]) == 0  # everything it needs is imported

    def train():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main([*args, "--save", str(shared_folder / "model.json")])
        return status, out.getvalue(), err.getvalue()

    status, out, err = as_another_user(train)[1]
    assert (status, out) == (2, "") and err.startswith(f"microgd: error: --save '{shared_folder / 'model.json'}' "
                                                        "belongs to another user in a shared folder")
    assert err.count("\n") == 1 and (shared_folder / "model.json").read_text() == "their model"
