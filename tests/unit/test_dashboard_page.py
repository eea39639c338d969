"""The dashboard page as served: its Content-Security-Policy admits exactly its own inline
code, and its event page follows the links of a large event."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess

import pytest

from machinery_core import ui


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_names_the_digests_of_the_page_own_script_and_style() -> None:
    # Given the page as the API serves it
    page = ui.dashboard()

    # When its inline script and style are read back from the body
    script = re.findall(r"<script>(.*?)</script>", page.body, flags=re.DOTALL)
    style = re.findall(r"<style>(.*?)</style>", page.body, flags=re.DOTALL)

    # Then each is there once, and the policy admits exactly those bytes and no inline else
    assert len(script) == len(style) == 1
    directives = page.headers["Content-Security-Policy"].split("; ")
    policy = dict(directive.split(" ", 1) for directive in directives)
    assert policy["script-src"] == _sha256(script[0])
    assert policy["style-src"] == _sha256(style[0])
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert page.content_type == "text/html; charset=utf-8"


def test_the_page_loads_nothing_from_elsewhere_and_writes_no_html() -> None:
    body = ui.dashboard().body
    # no absolute URL: every request is relative to the API that served the page
    assert not re.search(r"(src|href)=\"(https?:)?//", body)
    assert 'fetch("/' not in body and "fetch('/" not in body
    # API text goes in as text only
    assert "innerHTML" not in body and "outerHTML" not in body
    assert "insertAdjacentHTML" not in body and "document.write" not in body


@pytest.mark.parametrize("blocks", ["", "<script>a</script><script>b</script>"])
def test_a_page_without_exactly_one_inline_script_is_refused(blocks: str) -> None:
    with pytest.raises(RuntimeError, match="exactly one inline <script>"):
        ui.policy(f"<style>p {{}}</style>{blocks}")


def _script_parts(*names: str) -> str:
    """The page's own top-level constants and functions of these names, as its script has them."""
    script = re.findall(r"<script>(.*?)</script>", ui.dashboard().body, flags=re.DOTALL)[0]
    parts = []
    for name in names:
        found = re.search(
            rf"^  (?:const {name} = [^\n]*;$|(?:async )?function {name}\(.*?^  \}}$)",
            script,
            re.MULTILINE | re.DOTALL,
        )
        assert found, f"the dashboard's {name} is not found"
        parts.append(found.group(0))
    return "\n".join(parts)


def test_the_event_page_reads_the_event_then_follows_its_links_before_showing_it() -> None:
    script = re.findall(r"<script>(.*?)</script>", ui.dashboard().body, flags=re.DOTALL)[0]
    # the event, as first read and at each poll, has its links followed
    assert "linked_payloads" in script
    assert re.search(r"await api\(`events/\$\{enc\(eventId\)\}`\);\s+return \[fresh, "
                     r"await followLinks\(fresh, values\)\]", script)  # fmt: skip
    assert "await read();" in script and "read()" in script.split("const poll")[1]
    # each href is read relative to the page, as every request is
    assert "api(payloadUrl(href))" in script and "api(payloadUrl(link.href))" in script


LINKS_PROGRAM = """
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
const asked = [];
const api = async (url) => {
  asked.push(url);
  if (!(url in VALUES)) throw new ApiError(503, "payload store unavailable");
  return VALUES[url];
};
(async () => {
  const values = new Map();
  const first = JSON.parse(JSON.stringify(ANSWER));
  const failed = await followLinks(first, values);
  const again = JSON.parse(JSON.stringify(ANSWER));
  const failedAgain = await followLinks(again, values);
  console.log(JSON.stringify({ first, again, asked, failed: failed.map((e) => e.message),
    failedAgain: failedAgain.length, held: [...values.keys()].sort() }));
})();
"""


def _link(path: str, ref: str, size: int) -> dict[str, object]:
    href = f"/events/e1/payloads/{ref * 64}"
    return {"path": path, "ref": ref * 64, "bytes": size, "href": href}


def test_the_dashboard_follows_the_links_it_shows_once_each_up_to_1_mb() -> None:
    # Given the dashboard's own followLinks(), run by Node, over an answer linking a data
    # field (its key escaped), one value in two places, a step's whole output, a value over
    # 1 MiB, one the API fails to give, and a step of an earlier run the page does not show
    node = shutil.which("node")
    if node is None:
        pytest.skip("no `node` on PATH to run the dashboard's script with")
    links = [
        _link("/data/pa~1th~0", "a", 30_000),
        _link("/outputs/blob", "b", 200_000),
        _link("/steps/0/output/blob", "b", 200_000),
        _link("/steps/1/output", "c", 20_000),
        _link("/steps/1/input/huge", "d", 1024 * 1024 + 1),
        _link("/steps/0/input/lost", "e", 20_000),
        _link("/runs/0/steps/0/output", "f", 20_000),
    ]
    placeholder = {link["path"]: {"$ref": link["href"], "bytes": link["bytes"]} for link in links}
    answer = {
        "data": {"name": "Ada", "pa/th~": placeholder["/data/pa~1th~0"]},
        "outputs": {"blob": placeholder["/outputs/blob"]},
        "steps": [
            {"input": {"lost": placeholder["/steps/0/input/lost"]},
             "output": {"blob": placeholder["/steps/0/output/blob"]}},
            {"input": {"huge": placeholder["/steps/1/input/huge"]},
             "output": placeholder["/steps/1/output"]},
        ],
        "runs": [{"steps": [{"output": placeholder["/runs/0/steps/0/output"]}]}],
        "linked_payloads": links,
    }  # fmt: skip
    values = {
        f"events/e1/payloads/{'a' * 64}": "n" * 30_000,
        f"events/e1/payloads/{'b' * 64}": "B" * 200_000,
        f"events/e1/payloads/{'c' * 64}": {"n": 2},
        f"events/e1/payloads/{'d' * 64}": "too large to read unasked",
        f"events/e1/payloads/{'f' * 64}": {"earlier": True},
    }
    program = (
        _script_parts("FOLLOW_BYTES", "SHOWN", "payloadUrl", "putAt", "followLinks")
        + f"\nconst ANSWER = {json.dumps(answer)};\nconst VALUES = {json.dumps(values)};"
        + LINKS_PROGRAM
    )

    # When it follows the links, then those of the same answer read again (the next poll)
    done = subprocess.run(  # the program on stdin: too long for an argument
        [node, "-"], input=program, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)

    # Then each value shown and under 1 MiB is in its place, read relative to the page
    first = result["first"]
    assert first["data"] == {"name": "Ada", "pa/th~": "n" * 30_000}
    assert first["outputs"] == {"blob": "B" * 200_000}
    assert first["steps"][0]["output"] == {"blob": "B" * 200_000}
    assert first["steps"][1]["output"] == {"n": 2}
    # And the value over 1 MiB, the one that failed and the earlier run's stay links
    assert first["steps"][1]["input"]["huge"] == placeholder["/steps/1/input/huge"]
    assert first["steps"][0]["input"]["lost"] == placeholder["/steps/0/input/lost"]
    assert first["runs"] == answer["runs"]
    assert result["failed"] == ["payload store unavailable"]
    # And each href was read once: the next poll read only the one that failed, again
    lost = f"events/e1/payloads/{'e' * 64}"
    assert sorted(result["asked"]) == sorted(
        [f"events/e1/payloads/{ref * 64}" for ref in "abc"] + [lost, lost]
    )
    assert result["again"] == first
    assert result["failedAgain"] == 1
