"""`hil firmware export`: the series as their sender posts them.

The patches in firmware/ carry no personal identity: `From:` and `Signed-off-by:` name the
project's placeholder. Certifying a patch (the Developer's Certificate of Origin) is the act of
the person who sends it, so the export takes `From:` and `Signed-off-by:` from the sender's
own `git config user.name` and `user.email`, refuses an identity that is unset or on a
reserved domain, and gives every subject `[RFC PATCH vN n/m]`, with a cover letter for each
series from its cover-letter.txt, its shortlog and its diffstat, as `git format-patch
--cover-letter` writes one.

    out/kernel/0000-cover-letter.patch 0001-....patch ...  (linux-kernel, virtualization)
    out/qemu/0000-cover-letter.patch 0001-....patch ...    (qemu-devel)
    out/spec/0001-....patch                                (virtio-comment)
"""

from __future__ import annotations

import email.utils
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hil.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SERIES = {"kernel": REPO / "firmware" / "kernel", "qemu": REPO / "firmware" / "qemu",
          "spec": REPO / "firmware" / "spec"}
# RFC 2606 and 6761: names that are never anyone's mailbox.
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_PLACEHOLDER = re.compile(r"^Signed-off-by: hil project <[^>\n]*>\n", re.M)
_SUBJECT = re.compile(r"^Subject: \[PATCH(?: v\d+)?(?: (\d+)/(\d+))?\]", re.M)
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def __str__(self) -> str:
        return email.utils.formataddr((self.name, self.email))


def identity_problem(name: str, address: str) -> str | None:
    """Why `name <address>` cannot sign off a patch, or None."""
    if not name.strip():
        return "git config user.name is unset: set it to the name you sign off with"
    if not address.strip():
        return "git config user.email is unset: set it to the address you post from"
    if not _EMAIL.fullmatch(address):
        return f"git config user.email {address!r} is not an e-mail address"
    domain = address.rsplit("@", 1)[1].lower().rstrip(".")
    if "noreply" in address.lower():
        return f"{address}: a no-reply address cannot receive the review; use your own"
    if domain.rsplit(".", 1)[-1] in _RESERVED_TLDS or domain in _RESERVED_DOMAINS or any(
            domain.endswith("." + d) for d in _RESERVED_DOMAINS):
        return f"{address}: {domain} is a reserved domain (RFC 2606), nobody's mailbox"
    return None


def sender(cwd: Path = REPO) -> Identity:
    """The sender's identity from git's configuration; ConfigError that says what to set."""
    def get(key: str) -> str:
        r = subprocess.run(["git", "config", "--get", key], cwd=cwd, capture_output=True,
                           text=True)
        return r.stdout.strip()

    who = Identity(get("user.name"), get("user.email"))
    problem = identity_problem(who.name, who.email)
    if problem is not None:
        raise ConfigError(f"firmware export: {problem} (git config --global user.name/"
                          "user.email); the series is signed off by whoever sends it")
    return who


def revision(cover_letter: str) -> int:
    """The series' revision from its cover letter's subject (`[PATCH v2 0/6]`: 2)."""
    m = re.search(r"^Subject: \[[^\]]*\bv(\d+)\b", cover_letter, re.M)
    return int(m.group(1)) if m else 1


def subject_tag(rev: int, number: int | None = None, total: int | None = None) -> str:
    count = f" {number}/{total}" if number is not None and total is not None else ""
    return f"[RFC PATCH v{rev}{count}]"


def rewrite_patch(text: str, who: Identity, rev: int) -> str:
    """One `git format-patch` file as its sender posts it: From:, subject tag, sign-off."""
    header, sep, rest = text.partition("\n\n")
    if not sep or not header.startswith("From ") or "\nSubject: " not in header:
        raise ConfigError("not a git format-patch file (no mbox header)")
    header = re.sub(r"^From: .*(?:\n[ \t].*)*$", f"From: {who}", header, count=1, flags=re.M)

    def tag(m: re.Match[str]) -> str:
        n, total = m.group(1), m.group(2)
        return "Subject: " + subject_tag(rev, int(n) if n else None,
                                         int(total) if total else None)

    header = _SUBJECT.sub(tag, header, count=1)
    message, cut, diff = rest.partition("\n---\n")
    if not cut:
        raise ConfigError("a patch without its `---` line")
    message = _PLACEHOLDER.sub("", message + "\n").rstrip("\n")
    sob = f"Signed-off-by: {who}"
    if sob not in message.splitlines():
        message += f"\n{sob}"
    return f"{header}\n\n{message}\n---\n{diff}"


def shortlog(patches: Sequence[str], who: Identity) -> str:
    """git shortlog's form: the author, then each subject (without its tag)."""
    subjects = []
    for p in patches:
        header = p.partition("\n\n")[0]
        m = re.search(r"^Subject: (?:\[[^\]]*\] )?(.*(?:\n[ \t].*)*)", header, re.M)
        subjects.append(re.sub(r"\n[ \t]+", " ", m.group(1)) if m else "")
    lines = "\n".join(f"  {s}" for s in subjects)
    return f"{who.name} ({len(patches)}):\n{lines}\n"


def diffstat(paths: Sequence[Path]) -> str:
    """The series' combined diffstat, as git's cover letter shows it (a file the series
    touches twice, once)."""
    r = subprocess.run(["git", "apply", "--numstat", *map(str, paths)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise ConfigError(f"firmware export: git apply --numstat: {r.stderr.strip()}")
    added: dict[str, int] = {}
    deleted: dict[str, int] = {}
    for line in r.stdout.splitlines():
        a, d, path = line.split("\t", 2)
        added[path] = added.get(path, 0) + int(a)
        deleted[path] = deleted.get(path, 0) + int(d)
    return format_diffstat(added, deleted)


def format_diffstat(added: dict[str, int], deleted: dict[str, int], width: int = 72) -> str:
    name_width = min(max(map(len, added), default=0), 50)
    changes = {p: added[p] + deleted[p] for p in added}
    count_width = len(str(max(changes.values(), default=0)))
    bar = max(1, width - name_width - count_width - 5)
    most = max(changes.values(), default=0)
    lines = []
    for path in sorted(added):
        shown = path if len(path) <= name_width else "..." + path[-(name_width - 3):]
        scale = min(1.0, bar / most) if most else 1.0
        # As git: a file with any change gets at least one sign of it.
        plus = max(round(added[path] * scale), 1 if added[path] else 0)
        minus = max(round(deleted[path] * scale), 1 if deleted[path] else 0)
        lines.append(f" {shown:<{name_width}} | {changes[path]:>{count_width}} "
                     f"{'+' * plus}{'-' * minus}".rstrip())
    files = len(added)
    lines.append(f" {files} file{'s' if files != 1 else ''} changed, "
                 f"{sum(added.values())} insertions(+), {sum(deleted.values())} deletions(-)")
    return "\n".join(lines) + "\n"


def cover_letter(text: str, who: Identity, rev: int, patches: Sequence[str], stat: str,
                 date: str) -> str:
    first, _, body = text.partition("\n")
    m = re.match(r"Subject: \[[^\]]*\] (.*)", first)
    if m is None:
        raise ConfigError("cover-letter.txt must start with `Subject: [PATCH vN 0/M] title`")
    head = (f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
            f"From: {who}\nDate: {date}\n"
            f"Subject: {subject_tag(rev, 0, len(patches))} {m.group(1)}\n")
    return f"{head}\n{body.strip()}\n\n{shortlog(patches, who)}\n{stat}\n-- \n"


def export(out: Path, who: Identity, rev: int | None = None,
           series: dict[str, Path] | None = None) -> list[Path]:
    """Write every series under `out`; the files written."""
    written: list[Path] = []
    series = series or SERIES
    if rev is None:
        # One revision for the three: they are posted together, and cite each other.
        letter = series["kernel"] / "cover-letter.txt"
        rev = revision(letter.read_text()) if letter.exists() else 1
    date = email.utils.formatdate(localtime=False)
    for name, directory in series.items():
        files = sorted((directory / "patches").glob("*.patch")) or \
            sorted(directory.glob("*.patch"))
        if not files:
            continue
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        texts = [rewrite_patch(f.read_text(), who, rev) for f in files]
        for f, text in zip(files, texts, strict=True):
            (target / f.name).write_text(text)
            written.append(target / f.name)
        letter = directory / "cover-letter.txt"
        if letter.exists() and len(files) > 1:
            path = target / "0000-cover-letter.patch"
            path.write_text(cover_letter(letter.read_text(), who, rev, texts, diffstat(files),
                                         date))
            written.insert(len(written) - len(files), path)
    return written
