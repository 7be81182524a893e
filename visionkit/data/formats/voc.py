"""Pascal VOC: one XML file per image, split lists and a class list.

Layout written (and read)::

    <out>/Annotations/<stem>.xml        filename, size, and one <object> per box
    <out>/JPEGImages/<name>             the image, its name and suffix kept
    <out>/ImageSets/Main/<split>.txt    the split's image stems, one a line
    <out>/labels.txt                    class names, one a line, in category order

Category ids are the 1-based line numbers of ``labels.txt`` (blank lines skipped), so a
catalog with ids ``1..K`` in order survives a round trip. Without that file the classes
are those of the per-class lists (``ImageSets/Main/<class>_<split>.txt``, as in the VOC
releases), else the object names of the split, sorted. A dataset without split lists has
one split, :data:`ALL_SPLIT`, of every XML file.

Coordinates follow VOC's 1-based pixel convention as Detectron2's ``pascal_voc.py``
reads it: ``xmin = x1 + 1``, ``ymin = y1 + 1``, ``xmax = x2``, ``ymax = y2``. They are
written with up to 4 decimals (whole numbers as integers), so float boxes survive
within 1e-4 px. VOC has no crowd flag and no per-object mask: ``iscrowd`` and
segmentations are not written.

Every split shares ``JPEGImages`` and ``Annotations``, so a stem names one image across
all splits: an image whose stem another split already uses is written as ``<stem>_1``
(``_2``...), as two images of one split with the same stem are.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree

from visionkit.data.formats._files import place_file, write_text_atomic
from visionkit.data.formats._problems import Problems
from visionkit.data.formats._writing import (
    record_size,
    require_image_files,
    require_known_categories,
    split_image_names,
)
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError

__all__ = ["ALL_SPLIT", "detect", "read", "splits", "write"]

ALL_SPLIT = "all"
"""The one split of a dataset without ``ImageSets/Main`` lists: every XML file."""

_MAIN = Path("ImageSets", "Main")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


class _Object(NamedTuple):
    number: int  # 1-based position among the file's <object> elements, for fault messages
    name: str
    bbox: tuple[float, float, float, float]
    difficult: bool


class _Image(NamedTuple):
    xml: Path
    filename: str
    width: int
    height: int
    objects: list[_Object]


def detect(path: Path) -> bool:
    """Whether ``path`` is a folder with an ``Annotations`` subfolder."""
    return (path / "Annotations").is_dir()


def splits(path: Path) -> list[str]:
    """Stems of the split lists in ``ImageSets/Main``, or ``["all"]`` when there are none."""
    return sorted(_split_lists(path)) or [ALL_SPLIT]


def read(path: Path, split: str, problems: Problems, images: Path | None = None) -> Catalog:
    """Read one split of a VOC dataset.

    Args:
        path: The dataset folder (holding ``Annotations``).
        split: A split list's stem, or :data:`ALL_SPLIT` when the dataset has none.
        problems: Where malformed files and objects go (strict mode raises the first).
        images: Ignored: images are in ``JPEGImages``.

    Returns:
        The split's catalog (``root`` and ``source`` are the dataset folder); image and
        annotation ids count from 1 in the split list's order.

    Raises:
        DataError: in strict mode, the first fault, naming file, record and field.
    """
    catalog = Catalog(path, [], [], source=path)
    parsed = [_parse_xml(xml, problems) for xml in _split_xmls(path, split, problems)]
    parsed = [image for image in parsed if image is not None]
    names = _class_names(path) or sorted({o.name for image in parsed for o in image.objects})
    catalog.categories = [Category(i, name) for i, name in enumerate(names, start=1)]
    ids = {c.name: c.id for c in catalog.categories}
    catalog.images = [
        _record(image, image_id, ids, problems) for image_id, image in enumerate(parsed, start=1)
    ]
    annotations = (a for record in catalog.images for a in record.annotations)
    for annotation_id, annotation in enumerate(annotations, start=1):
        annotation.id = annotation_id
    return catalog


def write(catalog: Catalog, out: Path, split: str) -> Path:
    """Write ``catalog`` as split ``split`` of the VOC dataset in ``out``.

    Other splits' lists are kept; ``labels.txt`` is written, or checked against the
    catalog's class names when another split wrote it.

    Args:
        catalog: The split to write.
        out: Dataset folder (created when missing).
        split: Split name: the stem of its ``ImageSets/Main`` list.

    Returns:
        The dataset folder ``out``.

    Raises:
        DataError: ``labels.txt`` already lists other class names, or an annotation's
            category is not in ``catalog.categories``
            (:class:`~visionkit.errors.ImageError` for a missing image file).
    """
    require_image_files(catalog)
    require_known_categories(catalog)
    _write_labels(out / "labels.txt", [c.name for c in catalog.categories])
    names = _voc_names(catalog, out, split)
    for record, name in zip(catalog, names, strict=True):
        place_file(catalog.image_path(record), out / "JPEGImages" / name)
        xml = _xml(catalog, record, name)
        write_text_atomic(out / "Annotations" / f"{Path(name).stem}.xml", xml)
    stems = "".join(f"{Path(name).stem}\n" for name in names)
    write_text_atomic(out / _MAIN / f"{split}.txt", stems)
    return out


# ---------------------------------------------------------------------------- reading


def _split_lists(path: Path) -> dict[str, Path]:
    """Split name -> list file in ``ImageSets/Main``, per-class lists left out."""
    lists = _list_files(path)
    return {stem: file for stem, file in lists.items() if not _per_class(stem, lists)}


def _list_files(path: Path) -> dict[str, Path]:
    return {p.stem: p for p in (path / _MAIN).glob("*.txt")}


def _per_class(stem: str, lists: dict[str, Path]) -> bool:
    """Whether ``stem`` names a per-class list, ``<class>_<split>`` (lines "stem 1" or
    "stem -1" saying whether the image shows the class), not a split."""
    return "_" in stem and stem.rpartition("_")[2] in lists


def _class_names(path: Path) -> list[str]:
    """The dataset's classes: ``labels.txt``, else the classes of the per-class lists
    (sorted, as the VOC devkit has them), else none."""
    labels = path / "labels.txt"
    if labels.is_file():
        return _lines(labels)
    lists = _list_files(path)
    return sorted({stem.rpartition("_")[0] for stem in lists if _per_class(stem, lists)})


def _lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _split_xmls(path: Path, split: str, problems: Problems) -> list[Path]:
    """The annotation files of ``split``, in the split list's order."""
    lists = _split_lists(path)
    if split in lists:
        # The first word of a line is the stem (per-class lists add a flag after it).
        return [path / "Annotations" / f"{line.split()[0]}.xml" for line in _lines(lists[split])]
    if split == ALL_SPLIT and not lists:
        return sorted((path / "Annotations").glob("*.xml"))
    problems.add(f"no split list {split}.txt", file=path / _MAIN, field="split")
    return []


def _parse_xml(xml: Path, problems: Problems) -> _Image | None:
    """The image of one annotation file; None (reported) when the file cannot be used."""
    try:
        root = ElementTree.parse(xml).getroot()
    except FileNotFoundError:
        problems.add("no such file", file=xml)
        return None
    except ElementTree.ParseError as error:
        problems.add(f"not well-formed XML: {error}", file=xml)
        return None
    try:
        width, height = (int(_number(root, f"size/{key}")) for key in ("width", "height"))
    except DataError as fault:
        problems.add(fault.message, file=xml, field=fault.field)
        return None
    objects = []
    for number, element in enumerate(root.findall("object"), start=1):
        try:
            objects.append(_object(element, number))
        except DataError as fault:
            problems.add(fault.message, file=xml, record=f"object {number}", field=fault.field)
    filename = (root.findtext("filename") or "").strip() or f"{xml.stem}.jpg"
    return _Image(xml, filename, width, height, objects)


def _object(element: ElementTree.Element, number: int) -> _Object:
    name = (element.findtext("name") or "").strip()
    if not name:
        raise DataError("missing", field="name")
    xmin, ymin, xmax, ymax = (_number(element, f"bndbox/{corner}") for corner in _CORNERS)
    difficult = bool(_number(element, "difficult", default=0.0))
    # VOC counts pixels from 1 and its max corner is the last pixel inside the box:
    # (xmin=1, xmax=W) covers the whole image, which is (0, W) in pixel-edge coordinates.
    return _Object(number, name, (xmin - 1, ymin - 1, xmax, ymax), difficult)


def _number(element: ElementTree.Element, path: str, default: float | None = None) -> float:
    """The number in the child element at ``path``; ``default`` when it is absent."""
    text = (element.findtext(path) or "").strip()
    if not text:
        if default is None:
            raise DataError("missing", field=path)
        return default
    try:
        return float(text)
    except ValueError:
        raise DataError(f"not a number: {text!r}", field=path) from None


def _record(image: _Image, image_id: int, ids: dict[str, int], problems: Problems) -> ImageRecord:
    """The catalog record of a parsed image; objects of an unknown class reported, skipped."""
    annotations = []
    for obj in image.objects:
        if obj.name not in ids:
            problems.add(
                f"unknown class {obj.name!r}: not in labels.txt (or, without that file, "
                "the per-class lists of ImageSets/Main)",
                file=image.xml,
                record=f"object {obj.number}",
                field="name",
            )
            continue
        annotations.append(Annotation(obj.bbox, ids[obj.name], difficult=obj.difficult))
    return ImageRecord(
        f"JPEGImages/{image.filename}", image.width, image.height, image_id, annotations
    )


# ---------------------------------------------------------------------------- writing


def _write_labels(path: Path, names: list[str]) -> None:
    """Write ``labels.txt``, or check that the one another split wrote lists ``names``."""
    if path.is_file():
        existing = _lines(path)
        if existing != names:
            raise DataError(
                f"the catalog's classes ({names}) differ from those labels.txt already lists "
                f"for other splits ({existing})",
                file=path,
            )
        return
    write_text_atomic(path, "".join(f"{name}\n" for name in names))


def _voc_names(catalog: Catalog, out: Path, split: str) -> list[str]:
    """File names in ``JPEGImages``, unique by stem across every split (the stem also names
    the shared annotation file), so writing a split never overwrites another's images."""
    taken = {
        line.split()[0].lower()
        for other, list_file in _split_lists(out).items()
        if other != split
        for line in _lines(list_file)
    }
    return split_image_names(catalog, taken)


def _xml(catalog: Catalog, record: ImageRecord, name: str) -> str:
    """The VOC annotation XML of one image."""
    width, height = record_size(catalog, record)
    root = ElementTree.Element("annotation")
    _child(root, "filename", name)
    size = ElementTree.SubElement(root, "size")
    # Depth 3: visionkit reads every image as RGB, whatever its file stores.
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        _child(size, key, str(value))
    _child(root, "segmented", "0")
    for annotation in record.annotations:
        obj = ElementTree.SubElement(root, "object")
        _child(obj, "name", catalog.names[annotation.category_id])
        _child(obj, "pose", "Unspecified")
        _child(obj, "truncated", "0")
        _child(obj, "difficult", str(int(annotation.difficult)))
        bndbox = ElementTree.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = annotation.bbox
        for corner, value in zip(_CORNERS, (x1 + 1, y1 + 1, x2, y2), strict=True):
            _child(bndbox, corner, _decimal(value))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def _child(parent: ElementTree.Element, tag: str, text: str) -> None:
    ElementTree.SubElement(parent, tag).text = text


def _decimal(value: float) -> str:
    """``value`` with up to 4 decimals, trailing zeros dropped: 12, 12.5, 12.3457."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
