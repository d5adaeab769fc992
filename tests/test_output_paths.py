"""Pictures are written where the returned path says, or refused naming the path."""

from __future__ import annotations

import numpy as np
import pytest

from srl import viz

IMAGES = np.zeros((4, 1, 3, 3))


def test_a_name_without_suffix_gets_png_and_is_returned(tmp_path):
    written = viz.save_grid(tmp_path / "grid", IMAGES)
    assert written == tmp_path / "grid.png" and written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_output_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "sub" / "grid.png"
    with pytest.raises(ValueError, match=rf"cannot write {target}: a part of .* is a file, not a directory"):
        viz.save_grid(target, IMAGES)
    with pytest.raises(ValueError, match="it is a directory"):
        viz.save_grid(tmp_path, IMAGES)
