"""edgecls.data.layout: which folder layouts are understood, and the errors for the rest."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgecls.data.layout import find_dataset
from edgecls.errors import DataError


def relative_split(dataset, base: Path) -> dict[str, set[tuple[str, str]]]:
    return {
        name: {(p.relative_to(base).as_posix(), dataset.classes[label]) for p, label in zip(paths, labels)}
        for name, (paths, labels) in dataset.splits.items()
    }


def test_class_folders_are_split_70_20_10(tmp_path, make_images):
    root = make_images(tmp_path / "data", classes=("dogs", "cats", "birds"), per_class=10)
    dataset = find_dataset(root, cache_root=tmp_path / "cache")
    assert dataset.root == root.resolve()
    assert dataset.classes == ["birds", "cats", "dogs"]
    assert dataset.split_source == "generated 70/20/10 (seed 0)"
    sizes = {name: len(paths) for name, (paths, _) in dataset.splits.items()}
    assert sizes == {"train": 21, "val": 6, "test": 3}
    for paths, labels in dataset.splits.values():
        assert all(dataset.classes[label] == path.parent.name for path, label in zip(paths, labels))
    assert dataset.archive_skipped == []


def test_split_does_not_depend_on_where_the_data_lives(tmp_path, make_images):
    first = make_images(tmp_path / "one", per_class=9)
    second = tmp_path / "elsewhere" / "two"
    shutil.copytree(first, second)
    a = find_dataset(first, seed=5, cache_root=tmp_path / "cache")
    b = find_dataset(second, seed=5, cache_root=tmp_path / "cache")
    assert relative_split(a, a.root) == relative_split(b, b.root)


def test_train_and_test_folders_carve_val_from_train(tmp_path, make_images):
    make_images(tmp_path / "d" / "train", per_class=20)
    make_images(tmp_path / "d" / "test", per_class=3)
    dataset = find_dataset(tmp_path / "d", cache_root=tmp_path / "cache")
    assert dataset.split_source == "folders: train, test; val carved from train (seed 0)"
    test_paths, _ = dataset.splits["test"]
    assert len(test_paths) == 9 and all("test" in p.parts for p in test_paths)
    train_paths, _ = dataset.splits["train"]
    val_paths, _ = dataset.splits["val"]
    # val takes 0.2 / (0.7 + 0.2) of the train folder.
    assert len(val_paths) == 3 * round(20 * 0.2 / 0.9)
    assert len(train_paths) + len(val_paths) == 60
    assert all("train" in p.parts for p in train_paths + val_paths)


def test_train_val_test_folders_with_aliases_and_any_case(tmp_path, make_images):
    make_images(tmp_path / "d" / "Training", per_class=5)
    make_images(tmp_path / "d" / "VALIDATION", per_class=2)
    make_images(tmp_path / "d" / "testing", per_class=1)
    (tmp_path / "d" / "notes").mkdir()
    dataset = find_dataset(tmp_path / "d", cache_root=tmp_path / "cache")
    assert dataset.split_source == "folders: train, val, test; ignored folders: notes"
    assert {name: len(paths) for name, (paths, _) in dataset.splits.items()} == {"train": 15, "val": 6, "test": 3}


def test_lone_train_folder_is_a_split_folder_not_a_wrapper(tmp_path, make_images):
    make_images(tmp_path / "d" / "train", per_class=10)
    dataset = find_dataset(tmp_path / "d", cache_root=tmp_path / "cache")
    assert dataset.split_source == "folders: train; val, test carved from train (seed 0)"


def test_wrapper_folders_are_descended(tmp_path, make_images):
    make_images(tmp_path / "outer" / "inner" / "dataset")
    (tmp_path / "outer" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "outer" / "__MACOSX").mkdir()
    dataset = find_dataset(tmp_path / "outer", cache_root=tmp_path / "cache")
    assert dataset.root == (tmp_path / "outer" / "inner" / "dataset").resolve()
    assert dataset.classes == ["a", "b", "c"]


def test_hidden_and_macosx_folders_are_not_classes_but_every_file_is_a_candidate(tmp_path, make_images):
    root = make_images(tmp_path / "d", per_class=4)
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._img.jpg").write_bytes(b"apple double")
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "t.jpg").write_bytes(b"x")
    (root / "a" / ".hidden_dir").mkdir()
    (root / "a" / ".hidden_dir" / "x.jpg").write_bytes(b"x")
    (root / "a" / "README.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"x")
    (root / "a" / "nested" / "deeper").mkdir(parents=True)
    (root / "a" / "nested" / "deeper" / "photo.weird").write_bytes(b"x")
    (root / "labels.csv").write_text("not in a class folder")
    dataset = find_dataset(root, fractions={"train": 1.0}, cache_root=tmp_path / "cache")
    assert dataset.classes == ["a", "b", "c"]
    names = {p.relative_to(root).as_posix() for p in dataset.splits["train"][0]}
    assert {"a/README.txt", "a/.DS_Store", "a/nested/deeper/photo.weird"} <= names
    assert not any("__MACOSX" in n or "hidden_dir" in n or "thumbnails" in n for n in names)
    assert len(names) == 12 + 3


def test_archive_with_a_wrapper_folder(tmp_path, make_images):
    source = make_images(tmp_path / "src" / "pets", classes=("cat", "dog"), per_class=5)
    archive = tmp_path / "Pets.ZIP"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
        zf.writestr("__MACOSX/pets/._x", b"junk")
        zf.writestr("../escape.txt", b"x")
    dataset = find_dataset(archive, cache_root=tmp_path / "cache")
    assert dataset.classes == ["cat", "dog"]
    assert dataset.root.name == "pets" and (tmp_path / "cache" / "archives") in dataset.root.parents
    assert dataset.archive_skipped == [("../escape.txt", "'..' in path")]
    assert sum(len(paths) for paths, _ in dataset.splits.values()) == 10


def test_all_test_fractions_put_everything_in_test(tmp_path, make_images):
    make_images(tmp_path / "d", per_class=3)
    dataset = find_dataset(tmp_path / "d", fractions={"train": 0, "val": 0, "test": 1}, cache_root=tmp_path / "c")
    assert len(dataset.splits["test"][0]) == 9 and dataset.splits["train"] == ([], [])


def _error(path, tmp_path) -> str:
    with pytest.raises(DataError) as caught:
        find_dataset(path, cache_root=tmp_path / "cache")
    return str(caught.value)


def test_missing_path(tmp_path):
    assert _error(tmp_path / "nowhere", tmp_path) == f"dataset not found: {tmp_path / 'nowhere'} does not exist"


def test_plain_file_is_neither_folder_nor_archive(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert "neither a folder nor a supported archive" in _error(tmp_path / "photo.jpg", tmp_path)


def test_corrupt_archive(tmp_path):
    (tmp_path / "d.tar.gz").write_bytes(b"nope")
    assert "cannot read archive" in _error(tmp_path / "d.tar.gz", tmp_path)


def test_no_class_folders(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "loose.jpg").write_bytes(b"x")
    assert _error(tmp_path / "d", tmp_path).startswith(f"no class folders in {tmp_path / 'd'}")


def test_no_files(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
    assert _error(tmp_path / "d", tmp_path) == f"no files in the class folders of {tmp_path / 'd'}"


def test_only_one_class(tmp_path, make_images):
    make_images(tmp_path / "d", classes=("cats",), per_class=2)
    (tmp_path / "d" / "empty_class").mkdir()
    message = _error(tmp_path / "d", tmp_path)
    assert message == f"found one class 'cats' in {tmp_path / 'd'}: a classifier needs at least two"


def test_class_missing_from_train(tmp_path, make_images):
    make_images(tmp_path / "d" / "train", classes=("a", "b"), per_class=2)
    make_images(tmp_path / "d" / "val", classes=("a", "zebra"), per_class=1)
    message = _error(tmp_path / "d", tmp_path)
    assert "class 'zebra' is in" in message and str(tmp_path / "d" / "train") in message


def test_split_folders_without_train(tmp_path, make_images):
    make_images(tmp_path / "d" / "val", per_class=1)
    make_images(tmp_path / "d" / "test", per_class=1)
    assert "but no train folder" in _error(tmp_path / "d", tmp_path)


def test_two_folders_for_one_split(tmp_path, make_images):
    make_images(tmp_path / "d" / "train", per_class=1)
    make_images(tmp_path / "d" / "val", per_class=1)
    make_images(tmp_path / "d" / "validation", per_class=1)
    assert "two folders for the val split" in _error(tmp_path / "d", tmp_path)


def test_unknown_split_name_in_fractions(tmp_path, make_images):
    make_images(tmp_path / "d", per_class=2)
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        find_dataset(tmp_path / "d", fractions={"train": 0.5, "holdout": 0.5}, cache_root=tmp_path / "c")


def test_errors_behind_a_symlinked_wrapper_name_the_real_folder(tmp_path):
    (tmp_path / "real" / "only" / "empty_class").mkdir(parents=True)
    (tmp_path / "real" / "only" / "other_class").mkdir()
    (tmp_path / "entry").mkdir()
    (tmp_path / "entry" / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    message = _error(tmp_path / "entry", tmp_path)
    assert message == f"no files in the class folders of {(tmp_path / 'real' / 'only').resolve()}"


def test_data_modules_stay_light():
    # The data layer runs in tools and on devices without TensorFlow; importing it must not pull it in.
    code = (
        "import sys, edgecls.data.archive, edgecls.data.decode, edgecls.data.demo_digits, edgecls.data.images, "
        "edgecls.data.layout, edgecls.data.split; "
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
