"""Image-folder datasets: directory or tar.gz, class ids, seeded order, grayscale, hierarchy, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_fixtures import image_folder, tar_gz
from PIL import Image

from overfit_first.data import image_folder as reader
from overfit_first.errors import PipelineError


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


def test_directory_gives_sorted_class_ids_and_exact_pixels(tmp_path: Path) -> None:
    pixels = image_folder(tmp_path, classes=("frog", "cat", "dog"))
    data = reader.read(tmp_path)
    assert data.class_names == ["cat", "dog", "frog"]
    assert data.train.x.shape == (12, 5, 6, 3) and data.test.x.shape == (6, 5, 6, 3)
    # The test set keeps path order: class by class, file by file.
    assert data.test.y.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(data.test.x[0], pixels["test/cat/000.png"])
    # The training set holds the same images, in a seeded shuffled order with labels following them.
    expected = {
        pixels[f"train/{name}/{index:03d}.png"].tobytes(): label
        for label, name in enumerate(data.class_names)
        for index in range(4)
    }
    assert {row.tobytes(): int(label) for row, label in zip(data.train.x, data.train.y, strict=True)} == expected
    assert data.train.y.tolist() != sorted(data.train.y.tolist())


def test_training_order_is_fixed_and_does_not_depend_on_the_archive_order(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree")
    first = reader.read(tmp_path / "tree")
    again = reader.read(tar_gz(tmp_path / "tree", tmp_path / "tree.tar.gz"))
    np.testing.assert_array_equal(first.train.x, again.train.x)
    np.testing.assert_array_equal(first.train.y, again.train.y)
    np.testing.assert_array_equal(first.test.x, again.test.x)


def test_tree_at_the_top_of_the_archive_and_hidden_files(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", top=None)
    (tmp_path / "tree" / "train" / "cat" / ".DS_Store").write_bytes(b"not an image")
    (tmp_path / "tree" / "README.md").write_text("notes", encoding="utf-8")
    data = reader.read(tar_gz(tmp_path / "tree", tmp_path / "tree.tar.gz"))
    assert len(data.train.y) == 12 and data.class_names == ["cat", "dog", "frog"]


def test_all_grayscale_gives_one_channel(tmp_path: Path) -> None:
    pixels = image_folder(tmp_path, mode="L")
    data = reader.read(tmp_path)
    assert data.train.x.shape[-1] == 1
    np.testing.assert_array_equal(data.test.x[0, ..., 0], pixels["test/cat/000.png"])


def test_one_grayscale_image_among_rgb_is_broadcast_to_rgb(tmp_path: Path) -> None:
    image_folder(tmp_path)
    gray = np.full((5, 6), 77, np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "tiny" / "test" / "cat" / "000.png")
    data = reader.read(tmp_path)
    assert data.test.x.shape[-1] == 3
    assert (data.test.x[0] == 77).all()


def test_hierarchy_csv_gives_superclass_labels(tmp_path: Path) -> None:
    image_folder(tmp_path, hierarchy={"cat": "mammal", "dog": "mammal", "frog": "amphibian"})
    data = reader.read(tar_gz(tmp_path / "tiny", tmp_path / "tiny.tar.gz"))
    assert data.superclass_names == ["amphibian", "mammal"]
    assert data.train.y_coarse is not None and data.test.y_coarse is not None
    coarse_of = {0: 1, 1: 1, 2: 0}
    assert data.train.y_coarse.tolist() == [coarse_of[label] for label in data.train.y.tolist()]
    assert data.test.y_coarse.tolist() == [1, 1, 1, 1, 0, 0]


def test_hierarchy_missing_a_class_is_an_error(tmp_path: Path) -> None:
    image_folder(tmp_path, hierarchy={"cat": "mammal", "dog": "mammal"})
    with pytest.raises(PipelineError, match=r"hierarchy.csv does not match the class folders: missing \['frog'\]"):
        reader.read(tmp_path)


def test_an_image_of_another_size_is_named(tmp_path: Path) -> None:
    image_folder(tmp_path)
    Image.new("RGB", (7, 7)).save(tmp_path / "tiny" / "train" / "dog" / "001.png")
    with pytest.raises(PipelineError, match=r"tiny/train/dog/001.png is 7x7 but most images are 6x5; resize"):
        reader.read(tmp_path)


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    image_folder(tmp_path)
    (tmp_path / "tiny" / "test" / "frog" / "notes.txt").write_text("hello", encoding="utf-8")
    unreadable = r"tiny.tar.gz: test/frog/notes.txt is not a readable image \(not a format Pillow reads\); remove it"
    with pytest.raises(PipelineError, match=unreadable):
        reader.read(tar_gz(tmp_path / "tiny", tmp_path / "tiny.tar.gz"))


def test_test_classes_must_exist_in_training(tmp_path: Path) -> None:
    image_folder(tmp_path)
    (tmp_path / "tiny" / "test" / "newt").mkdir()
    Image.new("RGB", (6, 5)).save(tmp_path / "tiny" / "test" / "newt" / "0.png")
    with pytest.raises(PipelineError, match=r"test/ has classes with no training images: \['newt'\]"):
        reader.read(tmp_path)


def test_two_top_level_folders_are_ambiguous(tmp_path: Path) -> None:
    image_folder(tmp_path, top="a")
    image_folder(tmp_path, top="b")
    with pytest.raises(PipelineError, match=r"two top-level folders \(a, b\)"):
        reader.read(tmp_path)


def test_a_folder_without_images_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"no images under train/<class>/ and test/<class>/"):
        reader.read(tmp_path / "empty")
