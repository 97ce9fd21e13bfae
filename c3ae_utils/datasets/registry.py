"""The registry of the course's datasets: where each one lives, its terms and its layout.

Contract: pure data, no I/O. `REGISTRY` maps a dataset name to its `DatasetSpec` (official
downloads with sizes and checksums where published, the files of the offline mirror, the file
counts that prove an extracted folder whole, licence and citation); `get_spec(name)` looks one
up and raises ValueError naming the known datasets otherwise. `LABELLED` lists the datasets
with labels to tabulate. The constants name the completion marker, the environment variables
and the HTTP user agent shared by the download and fetch modules.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import PurePosixPath

MARKER = ".complete"  # written inside `raw_dir()/<name>/` once the folder is whole
OFFLINE_VARIABLE = "C3AE_OFFLINE"  # "1": never touch the network (mirror or local files only)
MIRROR_VARIABLE = "C3AE_DATA_MIRROR"


def repository_url() -> str:
    """The course's repository (`[project.urls] Repository` in pyproject.toml), or "" when the
    package's metadata is not installed."""
    try:
        urls = importlib.metadata.metadata("c3ae-course").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return ""
    return next((url.split(", ", 1)[1] for url in urls if url.startswith("Repository, ")), "")


USER_AGENT = "c3ae-course/0.1" + (f" (+{repository_url()})" if repository_url() else "")


@dataclass(frozen=True)
class RemoteFile:
    """One file at a dataset's official (or best-known) home.

    `target` is where a plain (non-archive) file goes inside the dataset folder; archives
    (`.tar`, `.tar.gz`, `.tgz`, `.zip`) are extracted instead. `size` is in bytes; checksums
    are hex digests, None where none is published.
    """

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class MirrorFile:
    """One file of the offline mirror, relative to `C3AE_DATA_MIRROR` (SHA-256 from its README)."""

    path: str
    sha256: str | None
    size: int | None
    target: str | None = None  # plain files: where they go inside the dataset folder


@dataclass(frozen=True)
class LayoutCheck:
    """`pattern` (a glob inside the dataset folder) must match one of `counts` files."""

    pattern: str
    counts: tuple[int, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the course knows about one dataset: where it lives, its terms, its layout."""

    name: str
    title: str
    homepage: str
    downloads: tuple[RemoteFile, ...]
    mirror: tuple[MirrorFile, ...]
    layout: tuple[LayoutCheck, ...]
    licence: str
    citation: str
    notes: str = ""
    approximate_size: int | None = None  # bytes, rounded, where no exact size is published

    @property
    def download_size(self) -> int | None:
        """Total bytes of the official downloads, None when a size is unknown."""
        sizes = [remote.size for remote in self.downloads]
        return None if any(size is None for size in sizes) else sum(sizes)

    @property
    def size_estimate(self) -> int | None:
        """`download_size`, else `approximate_size` (bytes); None when neither is known."""
        return self.download_size if self.download_size is not None else self.approximate_size


_IMDB_WIKI_HOME = "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/"
_IMDB_WIKI_TERMS = (
    "Academic research purposes only; the copyright of the images belongs to their "
    "original owners. Nothing is redistributed by this course."
)
_IMDB_WIKI_CITATION = (
    "R. Rothe, R. Timofte, L. Van Gool. DEX: Deep EXpectation of apparent age from a single "
    "image. ICCV Workshops 2015; and Deep expectation of real and apparent age from a single "
    "image without facial landmarks. IJCV 126(2-4), 2018."
)
_REFERENCE_RAW = "https://github.com/StevenBanama/C3AE/raw/master"


def _reference_file(folder: str, name: str, size: int, sha256: str) -> tuple[RemoteFile, MirrorFile]:
    """The official URL and the mirror entry of one file of the reference repository."""
    remote = RemoteFile(f"{_REFERENCE_RAW}/{folder}/{name}", name, size, sha256, target=name)
    return remote, MirrorFile(f"reference_c3ae/{name}", sha256, size, target=name)


_REFERENCE_FILES = [
    _reference_file("model", "c3ae_imdb_v89.h5", 773_112,
                    "f5c2fb97285e4394165aa13be56d0877fb5cb3a5fd5178d5be842b19476f7996"),
    _reference_file("model", "imdb_focal_loss_c3ae_v84.h5", 659_496,
                    "98f3ae534bd8b7b0c992fa2a04077a4c5a6ff4754817e2af7e9954dd6ffc1f9d"),
    _reference_file("assets", "timg.jpg", 92_507,
                    "790f5b7534065da0be8ba1a23308d7d4da5b51b4d76dbbe4f4a85483a42a9228"),
    _reference_file("assets", "pattern5.jpg", 164_043,
                    "fd42abe111691aa6f3785ebbe9ef5f013f7d8f65307751f84d8b0cb33df0afcd"),
    _reference_file("assets", "example1.jpg", 147_544,
                    "a8342c9d955265f45dca40879c074cd37b65aa1c253efc5a946ab93cc8a08639"),
    _reference_file("assets", "example2.jpg", 218_945,
                    "f9de0c6960355d31db56719617073fabc7e67a90fe5df55034d604f9f7ce1b1f"),
]

# (source repository, commit, path in the repository, size, SHA-256) of the demo files.
_DEMO_SOURCES = [
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/two_people.jpg", 487_722,
     "536b29cd513fb618e4d5aa79d51a279948daa804ce359463449cce5f9dc68aa7"),
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/knn_examples/test/obama_and_biden.jpg", 559_466,
     "b8781c1f734616a942ce67626e104151f7d891bc7064ae8a3db175f064357a1a"),
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/short_hamilton_clip.mp4", 613_928,
     "0b5ff4c55a4cd69f79956f312681730881fe1e2a9e6146e75c31636dffcc7e28"),
    ("timesler/facenet-pytorch", "787da06156087cd6b616fe6608213722bddc30cd",
     "data/multiface.jpg", 300_852,
     "433a04ac20456b02284f66f8336a4267be86a99ed3635141a477e192312b4f2f"),
    ("timesler/facenet-pytorch", "787da06156087cd6b616fe6608213722bddc30cd",
     "examples/video.mp4", 2_411_585,
     "d4c0b7a4e385e11ee3cfe7fbdfd0d01d319e16944441bba747a897eed33d115f"),
    ("serengil/deepface", "243209fd7b46ecdecf72665cc25219f6e8181f25",
     "tests/unit/dataset/selfie-many-people.jpg", 71_506,
     "c5c306582edaea1fd61d328f8822e0421af6547deb7a36903ba5f9169cb62034"),
    ("serengil/deepface", "243209fd7b46ecdecf72665cc25219f6e8181f25",
     "tests/unit/dataset/couple.jpg", 944_694,
     "18654b7e11a237846ee6b7d641206503fa90e8b3ad6a949ecb02835ea9a561eb"),
]


def _demo_files() -> tuple[tuple[RemoteFile, ...], tuple[MirrorFile, ...]]:
    """Official URLs and mirror entries of `_DEMO_SOURCES` (`<owner>_<repo>/<file name>`)."""
    remotes: list[RemoteFile] = []
    mirrors: list[MirrorFile] = []
    for repository, commit, source_path, size, sha256 in _DEMO_SOURCES:
        target = f"{repository.replace('/', '_')}/{PurePosixPath(source_path).name}"
        url = f"https://github.com/{repository}/raw/{commit}/{source_path}"
        remotes.append(RemoteFile(url, target.replace("/", "__"), size, sha256, target=target))
        mirrors.append(MirrorFile(f"demo/{target}", sha256, size, target=target))
    return tuple(remotes), tuple(mirrors)


_DEMO_REMOTES, _DEMO_MIRROR = _demo_files()

REGISTRY: dict[str, DatasetSpec] = {
    "utkface": DatasetSpec(
        name="utkface",
        title="UTKFace, aligned & cropped faces (200x200)",
        homepage="https://susanqq.github.io/UTKFace/",
        downloads=(
            RemoteFile(
                # The home page's Google Drive file returns 404 since 2026-09; this Hugging Face
                # copy, pinned to a commit, is the same aligned & cropped release.
                "https://huggingface.co/datasets/py97/UTKFace-Cropped/resolve/"
                "e80f21fb21fa3631380c3cb634b79be3ac2f4cba/UTKFace.tar.gz",
                "UTKFace.tar.gz",
                size=106_634_631,
                sha256="2c0655397b498e81b82d685ee74bee8c2e4364a5897caf3afec6ea48929024a7",
            ),
        ),
        mirror=(
            MirrorFile("utkface/UTKFace_part1of2.tar.gz",
                       "16e2ac24f0d8053e554103b39e3775a498cae018f946d7d1df90ce9974179bcf", 48_249_814),
            MirrorFile("utkface/UTKFace_part2of2.tar.gz",
                       "9b0b3852ad3f866d271e9a8192c609e1bbf1e643253b3a8e73cd3e53afb019b5", 50_851_796),
        ),
        # 22,207 in the course mirror (1,501 files held back), 23,708 in the official release.
        layout=(LayoutCheck("UTKFace/*.jpg", (22_207, 23_708)),),
        licence="Non-commercial research purposes only; the copyright of the images belongs "
        "to their original owners. Nothing is redistributed by this course.",
        citation="Z. Zhang, Y. Song, H. Qi. Age Progression/Regression by Conditional "
        "Adversarial Autoencoder. CVPR 2017.",
        notes="Labels in file names: [age]_[gender 0 male, 1 female]_[race]_[date&time].jpg.chip.jpg.",
    ),
    "fgnet": DatasetSpec(
        name="fgnet",
        title="FG-NET Aging Database (1,002 photos of 82 people)",
        homepage="https://yanweifu.github.io/FG_NET_data/",
        downloads=(
            RemoteFile("http://yanweifu.github.io/FG_NET_data/FGNET.zip", "FGNET.zip",
                       md5="1206978cac3626321b84c22b24cc8d19"),
        ),
        mirror=(
            MirrorFile("fgnet/FGNET.tar",
                       "8aee902353ae5a8ecc311601b0ae3623a9f3b4d6a7ed90f953cea215c04203ac", 48_721_920),
        ),
        layout=(LayoutCheck("FGNET/images/*.[jJ][pP][gG]", (1_002,)),),
        licence="Distributed for academic research; no formal licence text accompanies it. "
        "Nothing is redistributed by this course.",
        citation="A. Lanitis, C. J. Taylor, T. F. Cootes. Toward automatic simulation of aging "
        "effects on face images. IEEE TPAMI 24(4), 2002.",
        notes="Labels in file names: NNNAxx[a|b].JPG = subject NNN at age xx.",
    ),
    "wiki": DatasetSpec(
        name="wiki",
        title="IMDB-WIKI, Wikipedia part (62,328 faces + wiki.mat)",
        homepage=_IMDB_WIKI_HOME,
        downloads=(
            RemoteFile(_IMDB_WIKI_HOME + "static/wiki_crop.tar", "wiki_crop.tar"),
        ),
        mirror=(
            MirrorFile("imdb_wiki/wiki.mat",
                       "bd6adc5eb6a31c15d36d93a1a9c63940f27b62ca51b9028606b3a57d6a33993c",
                       3_800_373, target="wiki.mat"),
        ),
        layout=(LayoutCheck("wiki.mat", (1,)),),
        licence=_IMDB_WIKI_TERMS,
        citation=_IMDB_WIKI_CITATION,
        notes="About 0.8 GB; no checksum is published, so the size and SHA-256 are recorded "
        "in wiki_crop.tar.json after the first download. The mirror holds wiki.mat only.",
        approximate_size=800_000_000,
    ),
    "imdb": DatasetSpec(
        name="imdb",
        title="IMDB-WIKI, IMDb part (460,723 faces + imdb.mat)",
        homepage=_IMDB_WIKI_HOME,
        downloads=(
            RemoteFile(_IMDB_WIKI_HOME + "static/imdb_crop.tar", "imdb_crop.tar"),
        ),
        # Not in the course mirror; a mirror that has it is used (no published checksum).
        mirror=(MirrorFile("imdb_wiki/imdb.mat", None, None, target="imdb.mat"),),
        layout=(LayoutCheck("imdb.mat", (1,)),),
        licence=_IMDB_WIKI_TERMS,
        citation=_IMDB_WIKI_CITATION,
        notes="About 7 GB; no checksum is published, so the size and SHA-256 are recorded "
        "in imdb_crop.tar.json after the first download.",
        approximate_size=7_000_000_000,
    ),
    "reference": DatasetSpec(
        name="reference",
        title="C3AE reference implementation: two pretrained Keras .h5 models and 4 pictures",
        homepage="https://github.com/StevenBanama/C3AE",
        downloads=tuple(remote for remote, _ in _REFERENCE_FILES),
        mirror=tuple(mirror for _, mirror in _REFERENCE_FILES),
        layout=(LayoutCheck("*.h5", (2,)), LayoutCheck("*.jpg", (4,))),
        licence="BSD-2-Clause (c) 2019 StevenBanama; the models were trained on IMDB-WIKI, whose "
        "academic-research-only terms apply to them too.",
        citation="C. Zhang, S. Liu, X. Xu, C. Zhu. C3AE: Exploring the Limits of Compact Model "
        "for Age Estimation. CVPR 2019 (models: github.com/StevenBanama/C3AE, commit 9cfd0cb).",
    ),
    "demo": DatasetSpec(
        name="demo",
        title="Multi-face photos and two short videos for the inference demo",
        homepage="https://github.com/ageitgey/face_recognition",
        downloads=_DEMO_REMOTES,
        mirror=_DEMO_MIRROR,
        layout=(LayoutCheck("*/*.jpg", (5,)), LayoutCheck("*/*.mp4", (2,))),
        licence="Test fixtures of MIT-licensed repositories (ageitgey/face_recognition, "
        "timesler/facenet-pytorch, serengil/deepface); the photos' copyright stays with their "
        "owners: teaching and testing only.",
        citation="Files pinned to the commits named in their URLs.",
    ),
}

LABELLED = ("utkface", "fgnet", "wiki", "imdb")  # datasets with a metadata table


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of `name`; ValueError listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


