"""Image-folder datasets: directory or archive, class ids, seeded order, image modes, links, hierarchy, bad input."""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from overfit_first.data import image_folder as reader
from overfit_first.errors import PipelineError

from data_fixtures import add_tar_link, image_folder, tar_gz, zip_archive, zip_with_member


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


# ---------------------------------------------------------------- image modes (issue #11 row 2)

RAMP = (np.arange(30, dtype=np.int64).reshape(5, 6) * 8).astype(np.uint8)  # 0..232, 6x5
RGB_RAMP = np.stack([RAMP, 255 - RAMP, np.roll(RAMP, 7)], axis=-1)
PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]  # red, green, blue, a gray


def _palette(mode: str, palette: list[int]) -> tuple[Image.Image, np.ndarray]:
    image = Image.fromarray(RAMP % 4)
    image.putpalette(palette)
    colours = np.array(palette, dtype=np.uint8).reshape(-1, 3)
    return image.convert(mode), colours[RAMP % 4]


def _mode_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    """An image in `mode` and the uint8 pixels it must read as (H x W grayscale, H x W x 3 colour)."""
    sixteen = RAMP.astype(np.uint16) * 257  # 8-bit v is 16-bit 257 v: scaling back gives v exactly
    alpha = Image.new("L", (6, 5), 255)
    rgb = Image.fromarray(RGB_RAMP)
    if mode == "1":
        return Image.fromarray(RAMP > 100), np.where(RAMP > 100, 255, 0).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(RAMP), RAMP
    if mode in ("LA", "La"):
        return Image.merge(mode, (Image.fromarray(RAMP), alpha)), RAMP
    if mode.startswith("I;16"):
        order = {"I;16B": ">u2", "I;16L": "<u2"}.get(mode, "=u2")
        return Image.frombytes(mode, (6, 5), sixteen.astype(order).tobytes()), RAMP
    if mode == "I":
        return Image.fromarray(sixteen.astype(np.int32)), RAMP
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32) / 255), RAMP
    if mode in ("P", "PA"):
        return _palette(mode, PALETTE)
    if mode == "LAB":  # bytes: L* 0..100 as 0..255; a* and b* as signed bytes, 0 neutral
        lab = np.zeros((5, 6, 3), dtype=np.uint8)
        lab[..., 0] = np.where(RAMP > 100, 255, 0)
        black_or_white = np.repeat(lab[..., :1], 3, axis=-1)
        return Image.frombytes("LAB", (6, 5), lab.tobytes()), black_or_white
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return rgb.convert(mode), RGB_RAMP
    converted = rgb.convert(mode)  # CMYK, YCbCr, HSV: lossy conversions, so compare with Pillow's own way back
    return converted, np.asarray(converted.convert("RGB"))


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pillow_mode_reads_as_8_bit_gray_or_rgb(mode: str) -> None:
    image, expected = _mode_image(mode)
    assert image.mode == mode
    pixels = reader.pixels(image)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    tolerance = 1 if mode == "LAB" else 0  # LittleCMS rounds
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= tolerance


def test_a_palette_of_grays_is_grayscale(tmp_path: Path) -> None:
    image, expected = _palette("P", [0, 0, 0, 80, 80, 80, 160, 160, 160, 255, 255, 255])
    np.testing.assert_array_equal(reader.pixels(image), expected[..., 0])


def _lossless_file(image: Image.Image, path: Path) -> Path | None:
    """`image` saved in the first lossless format that Pillow opens in the same mode; None if there is none."""
    for extension, fmt in (("png", "PNG"), ("tif", "TIFF")):
        target = path.with_suffix(f".{extension}")
        try:
            image.save(target, format=fmt)
            with Image.open(target) as reopened:
                if reopened.mode == image.mode and np.array_equal(np.asarray(reopened), np.asarray(image)):
                    return target
        except (OSError, ValueError, KeyError):
            pass
        target.unlink(missing_ok=True)
    return None


def test_every_mode_that_a_file_can_hold_is_read_from_the_folder(tmp_path: Path) -> None:
    image_folder(tmp_path, classes=("cat", "dog"), n_train=2, n_test=1, top=None)
    expected = {}
    for index, mode in enumerate(Image.MODES):
        image, pixels = _mode_image(mode)
        saved = _lossless_file(image, tmp_path / "test" / "cat" / f"{index:02d}")
        if saved is not None:
            expected[saved.relative_to(tmp_path).as_posix()] = pixels
    # Every mode Pillow opens from a PNG or TIFF file (I;16L only from its deprecated IM format; I;16N, La,
    # RGBa, RGBX, HSV only in memory: test_every_pillow_mode_reads_as_8_bit_gray_or_rgb covers them).
    opened = {Image.open(tmp_path / name).mode for name in expected}
    assert opened >= {"1", "CMYK", "F", "I", "I;16", "I;16B", "L", "LA", "LAB", "P", "PA", "RGB", "RGBA", "YCbCr"}
    data = reader.read(tmp_path)
    assert data.test.x.shape[-1] == 3  # grayscale and colour mixed: RGB
    names = sorted([*expected, "test/cat/000.png"])
    for row, name in enumerate(names):
        if name in expected:
            want = expected[name] if expected[name].ndim == 3 else np.repeat(expected[name][..., None], 3, -1)
            assert np.abs(data.test.x[row].astype(int) - want.astype(int)).max() <= 1, name


def test_16_bit_images_beside_8_bit_ones_are_scaled_and_gray_stays_one_channel(tmp_path: Path) -> None:
    image_folder(tmp_path, mode="L", classes=("cat", "dog"))
    sixteen = np.array([[0, 257, 65535, 32896, 1000, 60000]] * 5, dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "tiny" / "test" / "cat" / "000.png")  # a 16-bit PNG (mode I;16)
    Image.fromarray(sixteen).save(tmp_path / "tiny" / "train" / "dog" / "003.png")
    data = reader.read(tmp_path)
    assert data.train.x.shape[-1] == 1 and data.test.x.shape[-1] == 1
    np.testing.assert_array_equal(data.test.x[0, 0, :, 0], [0, 1, 255, 128, 4, 233])
    assert (data.train.x < 255).any(axis=(1, 2, 3)).all(), "no image became pure white"


def test_integer_and_float_images_outside_their_range_are_named_together(tmp_path: Path) -> None:
    image_folder(tmp_path, classes=("cat", "dog"))
    Image.fromarray(np.full((5, 6), 70000, dtype=np.int32)).save(tmp_path / "tiny" / "train" / "cat" / "big.tif")
    Image.fromarray(np.full((5, 6), 2.5, dtype=np.float32)).save(tmp_path / "tiny" / "test" / "dog" / "hot.tif")
    with pytest.raises(PipelineError) as raised:
        reader.read(tmp_path)
    message = str(raised.value)
    assert "2 files cannot be used" in message
    assert "tiny/train/cat/big.tif is not a readable image (its integer pixels span 70000..70000" in message
    assert "tiny/test/dog/hot.tif is not a readable image (its floating-point pixels span 2.5..2.5, not 0..1" in message


# ---------------------------------------------------------------- links (issue #11 row 3)


def _tree_with_links(root: Path) -> Path:
    """train/cat, test/cat real; pool/dog_train, pool/dog_test real; train/dog and test/dog links to them; a
    file link in train/cat. All links relative, so they stay valid inside an archive of `root`."""
    image_folder(root, classes=("cat",), top=None)
    image_folder(root / "pool", classes=("dog",), top=None, seed=1)
    for split in ("train", "test"):
        (root / "pool" / split / "dog").rename(root / "pool" / f"dog_{split}")
        (root / "pool" / split).rmdir()
        (root / split / "dog").symlink_to(f"../pool/dog_{split}", target_is_directory=True)
    (root / "train" / "cat" / "link.png").symlink_to("../../pool/dog_train/000.png")
    return root


def test_links_to_class_folders_and_files_are_followed(tmp_path: Path) -> None:
    tree = _tree_with_links(tmp_path / "tree")
    for source in (tree, tar_gz(tree, tmp_path / "tree.tar.gz")):
        data = reader.read(source)
        assert data.class_names == ["cat", "dog"], source
        assert np.bincount(data.train.y).tolist() == [5, 4] and np.bincount(data.test.y).tolist() == [2, 2]


def test_links_to_folders_elsewhere_on_disk_are_followed(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", classes=("cat",), top=None)
    image_folder(tmp_path / "far", classes=("dog",), top=None, seed=1)
    (tmp_path / "tree" / "train" / "dog").symlink_to(tmp_path / "far" / "train" / "dog")
    (tmp_path / "tree" / "test" / "dog").symlink_to(tmp_path / "far" / "test" / "dog")
    assert reader.read(tmp_path / "tree").class_names == ["cat", "dog"]


def test_hard_links_and_zip_symbolic_links_inside_the_archive_are_followed(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", classes=("cat", "dog"), top=None)
    archive = tar_gz(tmp_path / "tree", tmp_path / "tree.tar.gz")
    add_tar_link(archive, "train/dog/hard.png", "train/cat/000.png", hard=True)
    assert len(reader.read(archive).train.y) == 9
    zipped = zip_archive(tmp_path / "tree", tmp_path / "tree.zip")
    zip_with_member(zipped, "test/dog/again.png", b"../cat/001.png", link=True)
    zip_with_member(zipped, "train/frog", b"cat", link=True)  # a link to the folder train/cat
    data = reader.read(zipped)
    assert data.class_names == ["cat", "dog", "frog"] and len(data.test.y) == 5 and len(data.train.y) == 12


def test_link_loops_broken_links_and_empty_class_folders_are_named(tmp_path: Path) -> None:
    image_folder(tmp_path, classes=("cat", "dog"), top=None)
    (tmp_path / "train" / "cat" / "loop").symlink_to("..", target_is_directory=True)
    (tmp_path / "train" / "dog" / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "test" / "newt").mkdir()
    with pytest.raises(PipelineError) as raised:
        reader.read(tmp_path)
    message = str(raised.value)
    assert "3 files cannot be used" in message
    assert "train/cat/loop is a link back to a folder that contains it (a loop)" in message
    assert f"train/dog/gone.png is a broken link to {tmp_path / 'missing.png'}" in message
    assert "test/newt/ is a class folder without images" in message


@pytest.mark.parametrize(
    ("link", "target", "error"),
    [
        ("train/cat/loop", "..", r"link 'train/cat/loop/cat/loop' leads back into 'train' \(a link loop\)"),
        ("train/dog", "../nowhere", r"link 'train/dog' points to 'nowhere', which is not in the archive"),
    ],
)
def test_archive_link_loops_and_dangling_links_are_refused(tmp_path: Path, link: str, target: str, error: str) -> None:
    image_folder(tmp_path / "tree", classes=("cat", "dog"), top=None)
    archive = tar_gz(tmp_path / "tree", tmp_path / "tree.tar.gz")
    add_tar_link(archive, link, target)
    with pytest.raises(PipelineError, match=error):
        reader.read(archive)


# ---------------------------------------------------------------- archive formats (issue #11 row 4)


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tgz", "tar.bz2", "tar.xz", "zip"])
def test_every_archive_format_reads_like_the_directory(tmp_path: Path, kind: str) -> None:
    image_folder(tmp_path / "tree", hierarchy={"cat": "mammal", "dog": "mammal", "frog": "amphibian"})
    archive = tmp_path / f"pets.{kind}"
    if kind == "zip":
        zip_archive(tmp_path / "tree", archive)
        zip_with_member(archive, "__MACOSX/tiny/train/cat/._000.png", b"resource fork")  # macOS' zip leftovers
    else:
        tar_gz(tmp_path / "tree", archive, compression={"tar": "", "tgz": "gz"}.get(kind, kind.removeprefix("tar.")))
    expected, got = reader.read(tmp_path / "tree"), reader.read(archive)
    assert got.class_names == expected.class_names and got.superclass_names == expected.superclass_names
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(got, split).x, getattr(expected, split).x)
        np.testing.assert_array_equal(getattr(got, split).y, getattr(expected, split).y)


@pytest.mark.parametrize(
    ("name", "link", "reason"),
    [
        ("../evil.png", False, "'..' in its path"),
        ("/tmp/evil.png", False, "absolute path"),
        ("..\\evil.png", False, "'..' in its path"),
        ("C:/evil.png", False, "absolute path"),
        ("tiny/train/cat/escape", True, "link to '../../../../etc/passwd' outside the archive"),
    ],
)
def test_hostile_zip_members_are_refused(tmp_path: Path, name: str, link: bool, reason: str) -> None:
    image_folder(tmp_path / "tree")
    archive = zip_archive(tmp_path / "tree", tmp_path / "pets.zip")
    zip_with_member(archive, name, b"../../../../etc/passwd" if link else b"evil", link=link)
    with pytest.raises(PipelineError, match=re.escape(f"{archive}: unsafe member {name!r} ({reason})")):
        reader.read(archive)


@pytest.mark.parametrize(("name", "content"), [("pets.7z", b"7z\xbc\xaf\x27\x1c" + bytes(100)), ("pets.txt", b"hello")])
def test_other_formats_get_the_list_of_supported_ones(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    supported = ".tar, .tar.gz (.tgz), .tar.bz2 (.tbz2), .tar.xz (.txz) or .zip"
    with pytest.raises(
        PipelineError,
        match=re.escape(
            f"{tmp_path / name} is not an archive format this pipeline reads (its content is not {supported})"
        ),
    ):
        reader.read(tmp_path / name)


def test_a_truncated_zip_is_reported(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree")
    archive = zip_archive(tmp_path / "tree", tmp_path / "pets.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(PipelineError, match="is not a readable zip archive or is truncated"):
        reader.read(archive)


# ---------------------------------------------------------------- every unusable file named (issue #11 row 5)


def test_several_unreadable_files_are_named_in_one_error(tmp_path: Path) -> None:
    image_folder(tmp_path)
    for name in ("train/cat/a.txt", "train/dog/b.png", "test/frog/c.jpg"):
        (tmp_path / "tiny" / name).write_bytes(b"not an image")
    with pytest.raises(PipelineError) as raised:
        reader.read(tar_gz(tmp_path / "tiny", tmp_path / "tiny.tar.gz"))
    lines = str(raised.value).splitlines()
    assert lines[0] == f"{tmp_path / 'tiny.tar.gz'}: 3 files cannot be used:"
    assert lines[1:] == [
        f"  {name} is not a readable image (not a format Pillow reads); remove it"
        for name in ("test/frog/c.jpg", "train/cat/a.txt", "train/dog/b.png")
    ]


def test_many_unusable_files_list_the_first_twenty_and_the_total(tmp_path: Path) -> None:
    image_folder(tmp_path, top=None)
    for index in range(23):
        (tmp_path / "train" / "cat" / f"bad{index:02d}.png").write_bytes(b"")
    Image.new("RGB", (7, 7)).save(tmp_path / "train" / "dog" / "odd.png")
    with pytest.raises(PipelineError) as raised:
        reader.read(tmp_path)
    lines = str(raised.value).splitlines()
    assert lines[0].endswith(": 24 files cannot be used:") and len(lines) == 1 + reader.MAX_LISTED + 1
    assert lines[-1] == "  ... and 4 more"


def test_an_empty_class_folder_in_an_archive_is_named_and_other_empty_folders_are_not(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree")
    (tmp_path / "tree" / "tiny" / "train" / "newt").mkdir()
    (tmp_path / "tree" / "notes" / "drafts").mkdir(parents=True)  # another top-level folder, with no files
    with pytest.raises(PipelineError, match=r"tiny/train/newt/ is a class folder without images; add images or remove"):
        reader.read(zip_archive(tmp_path / "tree", tmp_path / "pets.zip"))
    (tmp_path / "tree" / "tiny" / "train" / "newt").rmdir()
    assert reader.read(zip_archive(tmp_path / "tree", tmp_path / "pets.zip")).class_names == ["cat", "dog", "frog"]


# ---------------------------------------------------------------- Unicode normalization (issue #24 item 8)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.mark.parametrize("kind", ["directory", "tar.gz", "zip"])
@pytest.mark.parametrize(("folder_form", "csv_form"), [(nfd, nfc), (nfc, nfd)], ids=["folder NFD", "csv NFD"])
def test_class_names_match_in_any_unicode_form_and_are_written_in_nfc(
    tmp_path: Path, kind: str, folder_form, csv_form
) -> None:
    """A class folder `café` as macOS writes it (NFD) beside a hierarchy.csv row typed as `café` (NFC), or the
    reverse, stopped with "missing ['café'], unknown ['café']": the same text, in two normalization forms."""
    image_folder(
        tmp_path / "tree",
        classes=("bar", folder_form("café")),
        hierarchy={"bar": "débit", csv_form("café"): csv_form("débit")},
    )
    source = {
        "directory": tmp_path / "tree",
        "tar.gz": tar_gz(tmp_path / "tree", tmp_path / "pets.tar.gz"),
        "zip": zip_archive(tmp_path / "tree", tmp_path / "pets.zip"),
    }[kind]
    data = reader.read(source)
    assert data.class_names == ["bar", nfc("café")] and data.superclass_names == [nfc("débit")]
    assert data.train.y_coarse is not None and set(data.train.y_coarse.tolist()) == {0}

    # The same tree with its folders named in NFC (hierarchy.csv's bytes as they were): the same data and checksum.
    hierarchy = {"bar": "débit", csv_form("café"): csv_form("débit")}
    image_folder(tmp_path / "nfc", classes=("bar", nfc("café")), hierarchy=hierarchy)
    same = reader.read(tmp_path / "nfc")
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(data, split).x, getattr(same, split).x)
        np.testing.assert_array_equal(getattr(data, split).y, getattr(same, split).y)
    assert reader.tree_checksum(tmp_path / "tree") == reader.tree_checksum(tmp_path / "nfc")


def test_a_file_there_twice_in_two_unicode_forms_is_named(tmp_path: Path) -> None:
    """Two class folders whose names differ only in their form are one class: macOS could not even hold both.
    Their files merge, and a file name that both hold is named (which of the two images is meant?)."""
    image_folder(tmp_path, classes=("bar", nfc("café")), top=None)
    shutil.copytree(tmp_path / "train" / nfc("café"), tmp_path / "train" / nfd("café"))
    with pytest.raises(PipelineError) as raised:
        reader.read(tmp_path)
    lines = str(raised.value).splitlines()
    assert lines[0].endswith(": 4 files cannot be used:")
    reason = "is there twice, its name written in two Unicode normalization forms (NFC, NFD); remove one"
    assert lines[1:] == [f"  train/{nfc('café')}/{index:03d}.png {reason}" for index in range(4)]

    for index in range(4):  # renamed: one class with the images of both folders
        (tmp_path / "train" / nfd("café") / f"{index:03d}.png").rename(
            tmp_path / "train" / nfd("café") / f"mac{index}.png"
        )
    data = reader.read(tmp_path)
    assert data.class_names == ["bar", nfc("café")] and data.train.y.tolist().count(1) == 8
