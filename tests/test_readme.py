"""The README's commands as written, in a copy of the checkout with a fresh HOME: install, demo, start,
status, stop; the test command is the one .ci/run runs; the wheel carries the addon script and LICENSE,
the sdist the tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .clients import CLAUDE, CODEX, require
from .conftest import ROOT, free_port, write_auth


def bash_blocks() -> list[list[str]]:
    """Each ```bash block of the README as its command lines (comments kept: bash ignores them)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [[line for line in b.splitlines() if line.strip()] for b in blocks]


@dataclass
class Installed:
    tree: Path
    env: dict[str, str]
    output: str  # what the install line printed

    def run(self, line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", line], cwd=self.tree, env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The first README block run as written in a copy of this checkout, then its PATH for the rest."""
    tmp = tmp_path_factory.mktemp("readme")
    tree, home = tmp / "codex-api-proxy", tmp / "home"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes((ROOT / name).read_bytes())
            (tree / name).chmod((ROOT / name).stat().st_mode)
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CODEX_API_PROXY_DEMO_PORT": str(free_port()),
    }  # the install line ends with `demo --once`
    for name in ("PYENV_ROOT", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE", "PIP_DEFAULT_TIMEOUT"):
        if name in os.environ:
            env[name] = os.environ[name]
    (install,) = bash_blocks()[0]
    # run as written, then keep the PATH it exported for the README's later commands
    r = subprocess.run(["bash", "-c", f"set -e; {install}; echo PATH=$PATH"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    env["PATH"] = r.stdout.strip().splitlines()[-1].removeprefix("PATH=")
    assert (home / ".local/bin/codex-api-proxy").resolve() == (tree / ".venv/bin/codex-api-proxy").resolve()
    yield Installed(tree, env, r.stdout + r.stderr)
    subprocess.run(["bash", "-c", "codex-api-proxy stop"], cwd=tree, env=env, capture_output=True, timeout=60)


def test_the_test_command_is_what_ci_runs() -> None:
    (command,) = bash_blocks()[1]
    assert "scripts/install --test" in command and "pytest" in command
    assert command in (ROOT / ".ci/run").read_text().splitlines()
    assert "npm" in (ROOT / "README.md").read_text().split(command)[0].rsplit("```", 1)[0][-400:]


def test_demo_as_written(installed: Installed) -> None:
    demo_line = next(line for line in bash_blocks()[2] if line.startswith("codex-api-proxy demo"))
    port = free_port()
    env = {**installed.env, "CODEX_API_PROXY_DEMO_PORT": str(port)}
    out = installed.tree.parent / "demo.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(["bash", "-c", f"exec {demo_line}"], cwd=installed.tree, env=env, stdout=f,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops." not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", trust_env=False, timeout=30,
                       json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert "demo model" in r.json()["choices"][0]["message"]["content"]
        # the README's client lines, in a project folder, each a whole tool round trip with the demo model
        work = installed.tree.parent / "project"
        work.mkdir(exist_ok=True)
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        clients = {**env, "CODEX_API_PROXY_PORT": str(port), "CODEX_API_PROXY_CLAUDE_BIN": require(CLAUDE),
                   "CODEX_API_PROXY_CODEX_BIN": require(CODEX)}  # fmt: skip
        for line in bash_blocks()[2][1:]:
            assert line.startswith(("codex-api-proxy claude ", "codex-api-proxy codex ")), line
            ran = subprocess.run(["bash", "-c", line], cwd=work, env=clients, capture_output=True, text=True,
                                 timeout=180, stdin=subprocess.DEVNULL)  # fmt: skip
            assert ran.returncode == 0, ran.stderr[-2000:]
            assert "The tool answered: hello from the codex-api-proxy demo" in ran.stdout, (line, ran.stdout)
    finally:
        proc.terminate()
        proc.wait(15)
    assert "POST /v1/chat/completions gpt-5.5 -> gpt-5.5: 200" in out.read_text()


def test_start_status_claude_stop_as_written(installed: Installed, fake: FakeBackend) -> None:
    write_auth(Path(installed.env["HOME"]) / ".codex")
    port = free_port()
    installed.env.update(CODEX_API_PROXY_PORT=str(port), CODEX_API_PROXY_UPSTREAM_URL=fake.url)
    start, status, claude, stop = (line.split("#")[0].strip() for line in bash_blocks()[3])
    assert (start, status, stop) == (
        "codex-api-proxy start",
        "codex-api-proxy status",
        "codex-api-proxy stop",
    )
    r = installed.run(start)
    assert r.returncode == 0 and f"running on http://127.0.0.1:{port}" in r.stdout, r.stderr
    r = installed.run(status)
    assert r.returncode == 0 and "mode: chatgpt" in r.stdout, r.stdout + r.stderr
    fake.enqueue(Turn(output=[text("Hi, on your login.")]))
    assert claude.startswith("codex-api-proxy claude ")
    r = installed.run(f"CODEX_API_PROXY_CLAUDE_BIN={shlex.quote(require(CLAUDE))} {claude}", timeout=180)
    assert r.returncode == 0 and "Hi, on your login." in r.stdout, r.stderr[-2000:]
    r = installed.run(stop)
    assert r.returncode == 0 and "stopped" in r.stdout
    assert installed.run(status).returncode == 1


def test_install_says_what_it_does_and_mitmweb_is_where_the_readme_says(installed: Installed) -> None:
    steps = [line for line in installed.output.splitlines() if line.startswith("==> ")]
    assert any("pip: installing codex-api-proxy" in line for line in steps), installed.output[-2000:]
    assert "Successfully installed" in installed.output or "Requirement already satisfied" in installed.output
    readme = " ".join((ROOT / "README.md").read_text().split())
    (by_hand,) = re.findall(r"`(\.venv/bin/mitmweb [^`]+)`", readme)
    assert '-s "$(codex-api-proxy addon-path)"' in by_hand
    r = installed.run(".venv/bin/mitmweb --version")  # from the checkout, as the README says
    assert r.returncode == 0 and "Mitmproxy" in r.stdout, r.stderr
    intro = readme.split("scripts/install --test && .venv/bin/python -m pytest")[0][
        -700:
    ]  # says what it installs
    for part in ("Claude Code 2.1.197 and 2.1.332", "Codex CLI 0.169.0 and 0.171.0", "1.5 GB", "apt-get"):
        assert part in intro, part


def test_the_wheel_carries_the_addon_script_and_license(installed: Installed) -> None:
    dist = installed.tree.parent / "dist"
    r = installed.run(f"{shlex.quote(str(installed.tree / '.venv/bin/pip'))} wheel -q --no-deps -w {dist} .",
                      timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = dist.glob("codex_api_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "codex_api_proxy/proxy/script.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    path = installed.run("codex-api-proxy addon-path").stdout.strip()
    assert Path(path).is_file() and path.endswith("codex_api_proxy/proxy/script.py")


def test_the_sdist_carries_the_tests(installed: Installed) -> None:
    dist = installed.tree.parent / "sdist"
    python = shlex.quote(str(installed.tree / ".venv/bin/python"))
    r = installed.run(f"{python} -m pip install -q 'setuptools>=77' && {python} -c \"from setuptools import "
                      f"build_meta; print(build_meta.build_sdist('{dist}'))\"", timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (sdist,) = dist.glob("codex_api_proxy-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "tests/conftest.py", "tests/clients.py", "scripts/install", ".ci/run",
            "codex_api_proxy/proxy/script.py"} <= names  # fmt: skip
    assert any(n.startswith("tests/fixtures/") for n in names)


def test_bench_smoke_as_written() -> None:
    """The README's quick benchmark line, as written: every target answers every figure (no thresholds:
    speed is shown by the benchmark, never asserted)."""
    (line,) = [x for b in bash_blocks() for x in b if "bench.py --quick" in x]
    r = subprocess.run(["bash", "-c", line.split("#", 1)[0]], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    table = [x.split() for x in r.stdout.splitlines() if x.strip()]
    rows = {x[0]: x[1:] for x in table if ":" in x[0] and not x[0].endswith(":")}
    assert {"ttfb_added_ms:messages", "cpu_ms_per_request:chat", "cpu_us_per_event:responses"} <= set(rows)
    assert all(len(v) >= 4 for v in rows.values())  # bare, 0.1.6 and this, and a ratio
