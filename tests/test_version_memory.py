"""Unloading a version lets its memory go: no reference kept, freed pages given back to the OS.

No RSS assert: with the toy model even keeping every unloaded version grows RSS by less than
the noise of a few cycles, so such an assert could not fail (checked).
"""

import gc
import platform
import shutil
import weakref

import numpy as np
import pytest

from peterrec.serving import memory, model_config, testing
from peterrec.serving import model_manager as mm

ROWS = np.array([[b"i1", b"i2", b""], [b"i3", b"nope", b"i4"]], dtype=object)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Version 1 of a toy model, copied to make every later version."""
    root = tmp_path_factory.mktemp("memory")
    testing.export_toy_model(str(root / "m"), 1)
    return root / "m" / "1"


class _Pushes:
    """A model served with the latest policy; ``push()`` publishes the next version and polls."""

    def __init__(self, source, tmp_path):
        self.source = source
        self.base = tmp_path / "m"
        self.base.mkdir()
        shutil.copytree(source, self.base / "1")
        self.version = 1
        entry = model_config.ModelEntry("m", str(self.base))
        self.manager = mm.ModelManager(model_config.build_model_server_config([entry]), poll_seconds=0)
        self.manager.start()

    def answer(self):
        """Answers a request on the served version; a weakref to that version."""
        servable = self.manager.resolve("m")
        for runner in servable.runners.values():
            if runner.kind != "classify":
                runner({"items": ROWS})
        return weakref.ref(servable)

    def push(self) -> None:
        """Publishes version N+1 (loaded, then N unloaded) and removes N from the disk."""
        self.version += 1
        shutil.copytree(self.source, self.base / str(self.version))
        self.manager.poll_once()
        assert self.manager.available_versions("m") == [self.version]
        shutil.rmtree(self.base / str(self.version - 1))


def test_an_unloaded_version_is_garbage(source, tmp_path):
    pushes = _Pushes(source, tmp_path)
    old = pushes.answer()
    pushes.push()
    gc.collect()
    assert old() is None, [type(r).__name__ for r in gc.get_referrers(old())]
    assert pushes.answer()() is not None  # the served version is kept


def test_each_unload_gives_freed_memory_back(source, tmp_path, monkeypatch):
    pushes = _Pushes(source, tmp_path)
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(pushes.manager.available_versions("m")))
    pushes.push()
    pushes.push()
    assert calls == [[2], [3]]  # once per unload, after the old version left


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_trims_on_glibc():
    assert memory.release_freed_memory() is True
