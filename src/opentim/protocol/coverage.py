"""The ``## Coverage`` section of docs/rest-commands.md, rendered from the code.

The section is generated, never edited by hand: Tencent's commands come from
``tencent_commands.COMMANDS`` (service -> command -> doc page) and OpenTIM's from the
command registry (``dispatch.COMMANDS`` once the services are loaded). A test compares the
rendered section with the file, so the page cannot drift from the code.

    python -m opentim.protocol.coverage           # print the section
    python -m opentim.protocol.coverage --write   # rewrite it in docs/rest-commands.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from opentim.protocol import dispatch, tencent_commands

HEADING = "## Coverage"
DOC = Path(__file__).resolve().parents[3] / "docs" / "rest-commands.md"

# Where an implemented command covers less than Tencent's: shown after "yes".
NOTES: Mapping[tuple[str, str], str] = {
    ("group_open_http_svc", "get_online_member_num"): "AVChatRoom",
    ("group_open_avchatroom_http_svc", "get_members"): "AVChatRoom and Community",
    ("group_open_avchatroom_http_svc", "modify_user_info"): "marks",
}

_INTRO = """\
The table lists Tencent's server REST commands per service, from Tencent's
[REST API list](https://cloud.tencent.com/document/product/269/1520) (English:
[trtc.io/document/34621](https://trtc.io/document/34621)), and whether OpenTIM implements
them. The same list is data in `src/opentim/protocol/tencent_commands.py`; this section is
generated from that module and the registered commands (`opentim.protocol.dispatch.COMMANDS`:
{count} commands) by `python -m opentim.protocol.coverage --write`, and a test fails when it
and the code disagree. "list" links to the list page where no page of the command's own was
found.

A command the server does not implement gets the service's unknown-command code: `60009` in
`im_open_login_svc` and in services OpenTIM does not have, `10003` in `group_open_http_svc`
and `group_open_avchatroom_http_svc`. The `ErrorInfo` tells the two cases apart:

- a command in this table: `group_open_http_svc/modify_group_base_info is a Tencent Cloud
  Chat command not implemented by OpenTIM (see docs/rest-commands.md#coverage; Tencent's
  page: https://cloud.tencent.com/document/product/269/1620)`;
- anything else: `unknown command 'creat_group' in service 'group_open_http_svc': did you
  mean 'create_group'?` (the suggestion only when a name is close), or `unknown service
  'group_open_htp_svc': did you mean 'group_open_http_svc'?`.
"""


def link_text(url: str) -> str:
    """A doc page's short name: "list", "trtc <id>", or "<product>/<id>"."""
    if url == tencent_commands.REST_API_LIST:
        return "list"
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.netloc == "trtc.io":
        return f"trtc {segments[-1]}"
    return "/".join(segments[-2:])


def render(tencent: Mapping[str, Mapping[str, str]],
           implemented: Collection[tuple[str, str]],
           notes: Mapping[tuple[str, str], str] = NOTES) -> str:
    """The section's Markdown, from its heading to its last line (ending in a newline).

    Raises ValueError when the inputs disagree: an implemented command or a note that is
    not one of Tencent's commands, or a note on a command OpenTIM lacks.
    """
    listed = {(svc, cmd) for svc, commands in tencent.items() for cmd in commands}
    unknown = sorted(set(implemented) - listed)
    if unknown:
        raise ValueError(f"implemented but not in tencent_commands: {unknown}")
    stray = sorted(key for key in notes if key not in listed or key not in implemented)
    if stray:
        raise ValueError(f"notes for commands OpenTIM does not implement: {stray}")
    lines = [HEADING, "", _INTRO.format(count=len(implemented)),
             "| Tencent command | OpenTIM | Tencent's page |", "| --- | --- | --- |"]
    for svc, commands in tencent.items():
        lines.append(f"| **`{svc}`** | | |")
        for cmd, url in commands.items():
            state = "no"
            if (svc, cmd) in implemented:
                note = notes.get((svc, cmd))
                state = f"yes ({note})" if note else "yes"
            lines.append(f"| `{cmd}` | {state} | [{link_text(url)}]({url}) |")
    return "\n".join(lines) + "\n"


def current() -> str:
    """The section as the code stands: every service module loaded."""
    dispatch.load_services()
    return render(tencent_commands.COMMANDS, set(dispatch.COMMANDS))


def section_bounds(text: str) -> tuple[int, int]:
    """Where the section is in a Markdown text: its heading up to the next "## " or EOF."""
    start = text.find(f"\n{HEADING}\n")
    if start < 0:
        raise ValueError(f"no {HEADING!r} heading")
    start += 1
    end = text.find("\n## ", start + len(HEADING))
    return start, len(text) if end < 0 else end + 1


def section_in(text: str) -> str:
    """The section of ``text``, without the blank lines that separate it from the next."""
    start, end = section_bounds(text)
    return text[start:end].rstrip("\n") + "\n"


def replaced(text: str, section: str) -> str:
    """``text`` with its section replaced by ``section``."""
    start, end = section_bounds(text)
    following = text[end:]
    return text[:start] + section + ("\n" + following if following else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m opentim.protocol.coverage",
        description="Print (or write) the Coverage section of docs/rest-commands.md.")
    parser.add_argument("--write", action="store_true",
                        help=f"rewrite the section in place in {DOC}")
    args = parser.parse_args(argv)
    section = current()
    if not args.write:
        sys.stdout.write(section)
        return 0
    text = DOC.read_text(encoding="utf-8")
    updated = replaced(text, section)
    if updated != text:
        DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
