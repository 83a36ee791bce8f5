"""Issue 18: what a user watches in a terminal. Log records and progress bars never share a line,
information is plain sentences (no reprs, no raw floats), commands end with a short summary and
the paths, pipes get no carriage-return redraws, ``--quiet`` prints only the final paths.

``demo --fast`` and ``test`` run as a user runs them: ``python -m align3d_ad`` on a 160-column
pseudo-terminal; the captured bytes are turned into the screen a terminal would show.
"""

from __future__ import annotations

import fcntl
import io
import logging
import math
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from align3d_ad import progress as progress_module
from align3d_ad.app.cli import TerminalFormatter, main
from align3d_ad.app.summary import metrics_table
from align3d_ad.evaluate.tables import read_results
from align3d_ad.progress import SHOWN_IN_BAR, TerminalHandler, progress, write_line
from align3d_ad.render import RenderCoverage
from align3d_ad.training.stages import epoch_postfix
from align3d_ad.viz.report import describe_coverage

COLUMNS = 160
RUN_TIMEOUT = 1500  # seconds; a demo --fast takes ~25 s on 2 idle cores
#: Anything that only a tqdm bar draws.
BAR_FRAGMENT = re.compile(r"\d+%\||it/s|s/it|\d+/\d+ \[\d\d:\d\d|[█▏▎▍▌▋▊▉]")
#: A whole bar line and nothing else: ``desc: 67%|████▋   | 2/3 [00:00<00:00, 17.9it/s, loss=1.81]``.
BAR_LINE = re.compile(r"^[\w./ -]+: +\d+%\|[^|]*\| \d+/\d+ \[[^\]]*\]$|^[\w./ -]+: \d+it \[[^\]]*\]$")
DATACLASS_REPR = re.compile(r"\b[A-Z]\w*\(\w+=")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
LOG_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR) (\S+): (.*)$")
CSI = re.compile(r"\x1b\[(\d*)([A-Za-z])")


# ------------------------------------------------------------------ a terminal, in a few lines
def screen(raw: bytes | str) -> list[str]:
    """The lines a terminal shows for ``raw``: ``\\r`` returns to column 0 and later text
    overwrites, ``\\n`` starts the next line, cursor-up / erase-line escapes are obeyed."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    rows: list[list[str]] = [[]]
    row = col = i = 0
    while i < len(text):
        ch = text[i]
        match = CSI.match(text, i) if ch == "\x1b" else None
        if match:
            n = int(match.group(1) or 1)
            if match.group(2) == "A":
                row = max(0, row - n)
            elif match.group(2) == "B":
                row += n
            elif match.group(2) == "K":
                del rows[row][col:]
            i = match.end()
        else:
            if ch == "\r":
                col = 0
            elif ch == "\n":
                row, col = row + 1, 0
            else:
                line = rows[row]
                line.extend(" " * (col - len(line)))
                if col < len(line):
                    line[col] = ch
                else:
                    line.append(ch)
                col += 1
            i += 1
        while len(rows) <= row:
            rows.append([])
    return ["".join(r).rstrip() for r in rows]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", TERM="xterm")
    return env


def run_in_pty(*argv: str) -> tuple[int, bytes]:
    """``python -m align3d_ad ARGV`` on a 160-column pseudo-terminal: exit status, screen bytes."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, COLUMNS, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "align3d_ad", *argv], stdin=slave,
                            stdout=slave, stderr=slave, env=_env(), close_fds=True)  # fmt: skip
    os.close(slave)
    chunks, deadline = [], time.monotonic() + RUN_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
        os.close(master)
    return proc.returncode, b"".join(chunks)


def run_piped(log: Path, *argv: str) -> tuple[int, bytes]:
    """``python -m align3d_ad ARGV`` with stdout and stderr going to the file ``log``."""
    with log.open("wb") as fh:
        code = subprocess.run([sys.executable, "-m", "align3d_ad", *argv], stdout=fh,
                              stderr=subprocess.STDOUT, env=_env(), timeout=RUN_TIMEOUT).returncode  # fmt: skip
    return code, log.read_bytes()


def significant_digits(number: str) -> int:
    return len(number.replace(".", "").lstrip("0"))


def assert_readable(lines: list[str]) -> None:
    """Each line is a whole bar or holds no bar fragment; no reprs, no long floats."""
    for line in lines:
        if BAR_FRAGMENT.search(line):
            assert BAR_LINE.match(line), f"a bar and something else share a line: {line!r}"
        assert not DATACLASS_REPR.search(line), line
        words = " ".join(w for w in line.split() if "/" not in w)  # paths may hold digits
        for number in DECIMAL.findall(words):
            assert significant_digits(number) <= 6, line


def run_log_records(run_dir: Path) -> list[tuple[str, str, str]]:
    """(level, logger, message) of every record of ``run_dir/run.log``."""
    out = []
    for line in (run_dir / "run.log").read_text(encoding="utf-8").splitlines():
        match = LOG_LINE.match(line)
        assert match, f"run.log line not a record: {line!r}"
        out.append(match.groups())
    return out


def _text(lines: list[str]) -> list[str]:
    """The non-empty lines that are not bars."""
    return [x for x in lines if x and not BAR_LINE.match(x)]


# ------------------------------------------------------------------ the real runs
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``demo --fast`` on a pseudo-terminal: (output folder, screen lines, raw bytes)."""
    out = tmp_path_factory.mktemp("terminal") / "demo"
    code, raw = run_in_pty("demo", "--fast", "--out", str(out), "--device", "cpu")
    lines = screen(raw)
    assert code == 0, "\n".join(lines[-30:])
    return out, lines, raw


@pytest.fixture(scope="module")
def test_runs(demo_run, tmp_path_factory):
    """``test`` with the demo's model on one category: on a pseudo-terminal and piped to a file."""
    out, _, _ = demo_run
    base = tmp_path_factory.mktemp("terminal_test")
    argv = ["test", "--checkpoint", str(out / "model"), "--dataset", "mvtec3d", "--root",
            str(out / "data"), "--categories", "bagel", "--device", "cpu"]  # fmt: skip
    code, raw = run_in_pty(*argv, "--out", str(base / "tty"))
    assert code == 0, raw.decode(errors="replace")[-3000:]
    code, piped = run_piped(base / "piped.txt", *argv, "--out", str(base / "piped"))
    assert code == 0, piped.decode(errors="replace")[-3000:]
    return base, raw, piped


def test_demo_screen_bars_and_records_never_share_a_line(demo_run):
    out, lines, raw = demo_run
    assert b"\r" in raw and "█".encode() in raw  # bars were drawn: this is a terminal run
    assert_readable(lines)
    records = run_log_records(out)
    epochs = [m for level, _, m in records if m.startswith("stage=")]
    assert len(epochs) == 3 + 2  # demo --fast: 3 + 2 epochs, every one in run.log in full
    assert all("loss" in m for m in epochs)
    for level, _, message in records:
        if message.startswith("stage="):  # shown in the stage bar, not as a line
            assert not any(message in x for x in lines)
        elif level == "INFO":  # every record a whole line of its own, never cut
            assert message in lines, message
        elif level == "WARNING":
            assert f"warning: {message}" in lines, message


def test_demo_screen_stage_bars_show_rounded_losses(demo_run):
    out, lines, _ = demo_run
    last = {}
    for _, _, message in run_log_records(out):
        if message.startswith("stage="):
            record = dict(kv.split("=") for kv in message.split())
            last[record["stage"]] = record
    for stage, keys in (("1", {"loss": "loss"}),
                        ("2", {"aligned": "loss_aligned", "rendering": "loss_rendering"})):  # fmt: skip
        (bar,) = [x for x in lines if x.startswith(f"stage {stage}: 100%|")]
        match = re.search(r"(?:it/s|s/it), (.*)\]$", bar)
        assert match, bar
        postfix = dict(kv.split("=") for kv in match.group(1).split(", "))
        for shown, logged in keys.items():
            assert significant_digits(postfix[shown]) <= 3, bar
            assert float(postfix[shown]) == pytest.approx(float(last[stage][logged]), rel=5e-3)
    assert any(x.startswith("stage 1: 100%|") and x.endswith(", scr=on]") for x in lines)
    assert any(x.startswith("stage 2: 100%|") and x.endswith(", dpca=on]") for x in lines)


def test_demo_screen_says_rendered_samples_in_sentences(demo_run):
    out, lines, _ = demo_run
    said = [x for x in lines if "; pictures in " in x]
    assert len(said) == 9  # one defective sample of each of the 9 test categories
    pattern = re.compile(r"^(\w+)/test/\w+/\d{3}: [\d,]+ points, 9 views, (every point seen|"
                         r"\d{1,2}\.\d% of points seen), \d+\.\d views per point; pictures in (\S+)/$")  # fmt: skip
    for line in said:
        match = pattern.match(line)
        assert match, line
        assert (Path(match.group(3)) / "views_scores.png").is_file()
        assert Path(match.group(3)).parent == out / "visuals"
    assert not any("RenderCoverage" in x or "rendered " in x for x in lines)


def test_demo_ends_with_the_summary_and_the_report_path(demo_run):
    out, lines, _ = demo_run
    text = _text(lines)
    doc = read_results(out / "metrics.json")
    assert text[-1] == f"report:     {out / 'report.md'}"
    assert text[-2] == f"html:       {out / 'report.html'}"
    assert text[-3] == f"run folder: {out}"
    text = text[:-1]  # the lines above the paths as before report.html
    assert text[-3].startswith("warning: tiny-clip has random weights: ")
    assert "not comparable with published results" in text[-3]
    header, points, grid, reference = text[-7:-3]
    assert header.split() == ["mean", "of", "9", "categories", "O-AUROC", "P-AUROC", "AUPRO"]
    for row, variant, label in ((points, "foreground", "points only"),
                                (grid, "grid", "organised grid, background 0"),
                                (reference, "reference", "reference style (as published)")):  # fmt: skip
        assert row.startswith(f"  {label} ")
        mean = doc["mean"]
        expected = [mean["object"]["o_auroc"], mean[variant]["p_auroc"], mean[variant]["aupro"]]
        assert row.split()[-3:] == [f"{100 * v:.1f}" for v in expected]
    assert text[-8].startswith("demo finished in ") and "tested zero-shot on 9 categories" in text[-8]
    # the summary, not the report: no Markdown table, heading or picture link reached the screen
    assert not any(x.startswith(("|", "#", "- ")) or "](" in x for x in lines)


def test_test_command_on_a_terminal_and_piped(test_runs):
    base, raw, piped = test_runs
    lines = screen(raw)
    assert_readable(lines)
    text = _text(lines)
    assert text[-1] == f"report:     {base / 'tty' / 'metrics.md'}"
    assert text[-2] == f"html:       {base / 'tty' / 'report.html'}"
    assert text[-3] == f"run folder: {base / 'tty'}"
    above = text[:-1]  # the lines above the paths as before report.html
    assert above[-3].startswith("warning: tiny-clip has random weights: ")
    assert above[-7].split() == ["bagel", "O-AUROC", "P-AUROC", "AUPRO"]
    assert above[-8].startswith("tested on mvtec3d (")
    # piped: no bar, no carriage-return redraw, and the very lines the terminal showed
    assert b"\r" not in piped and "█".encode() not in piped
    piped_lines = piped.decode().splitlines()
    assert_readable(piped_lines)

    def same(line: str, folder: str) -> str:  # the folder and the seconds a step took may differ
        return re.sub(r" in \d+(\.\d+)? s\b", " in T s", line.replace(str(base / folder), "OUT"))

    assert [same(x, "piped") for x in piped_lines if x] == [same(x, "tty") for x in text]


def test_quiet_prints_only_the_final_paths(demo_run, capsys, tmp_path):
    out, _, _ = demo_run
    code = main(["test", "--checkpoint", str(out / "model"), "--dataset", "mvtec3d", "--root",
                 str(out / "data"), "--categories", "bagel", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "t")])  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == 0
    assert stdout.splitlines() == [f"run folder: {tmp_path / 't'}",
                                   f"html:       {tmp_path / 't' / 'report.html'}",
                                   f"report:     {tmp_path / 't' / 'metrics.md'}"]  # fmt: skip
    assert stderr == ""


def test_render_verbose_quiet_and_default(demo_run, capsys, tmp_path):
    out, _, _ = demo_run
    argv = ["render", "--dataset", "mvtec3d", "--root", str(out / "data"), "--sample",
            "bagel/test/good/000", "--size", "64"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    stdout, stderr = capsys.readouterr()
    lines = stdout.splitlines()
    assert re.match(r"^bagel/test/good/000: [\d,]+ points, 9 views, .+ views per point$", lines[0])
    assert lines[-1] == f"pictures: {tmp_path / 'a'}"
    assert "RenderCoverage" not in stdout + stderr
    assert main([*argv, "--out", str(tmp_path / "b"), "--verbose"]) == 0
    stdout, stderr = capsys.readouterr()
    (debug,) = [x for x in stderr.splitlines() if "RenderCoverage(" in x]
    assert debug.startswith("debug align3d_ad.viz.report: rendered test/good/000: RenderCoverage(")
    assert main([*argv, "--out", str(tmp_path / "c"), "--quiet"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout == f"pictures: {tmp_path / 'c'}\n" and stderr == ""
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "d"), "--quiet", "--verbose"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


# ------------------------------------------------------------------ the pieces, fast
class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def quiet_logger():
    """A logger of the package's tree that passes nothing on to the root logger."""
    logger = logging.getLogger("align3d_ad.tests.terminal")
    logger.propagate, logger.level = False, logging.DEBUG
    yield logger
    logger.handlers.clear()


@pytest.mark.parametrize("verbose", [False, True])
def test_records_are_written_above_the_bar(quiet_logger, monkeypatch, verbose):
    term, logger = _FakeTerminal(), quiet_logger
    # in the test body: pytest's own capture puts its stream back between setup and call
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress_module, "_QUIET", False)
    logger.addHandler(TerminalHandler(term, verbose=verbose))
    bar = progress(range(3), desc="stage 1", leave=True)
    for epoch in bar:
        logger.info("epoch %d of the stage done", epoch + 1)
        logger.info("stage=1 epoch=%d loss=1.98843634", epoch + 1, extra=SHOWN_IN_BAR)
        bar.set_postfix_str(f"loss={1.98843634:.3g}")
    write_line("align3d-ad train: interrupted")
    lines = [x for x in screen(term.getvalue()) if x]
    assert_readable([x for x in lines if "loss=1.988" not in x])
    for n in (1, 2, 3):
        assert f"epoch {n} of the stage done" in lines
    assert "align3d-ad train: interrupted" in lines
    assert any(BAR_LINE.match(x) and x.endswith(", loss=1.99]") for x in lines)
    shown = [x for x in lines if x.startswith("stage=1 epoch=")]
    assert len(shown) == (3 if verbose else 0)  # the bar shows it; --verbose shows the record too


def test_shown_in_bar_records_are_lines_where_no_bar_is_drawn(quiet_logger, monkeypatch):
    pipe = io.StringIO()  # not a terminal: no bar, so the record is the only trace of the epoch
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(progress_module, "_QUIET", False)
    quiet_logger.addHandler(TerminalHandler(pipe))
    for epoch in progress(range(2), desc="stage 1", leave=True):
        quiet_logger.info("stage=1 epoch=%d loss=2", epoch + 1, extra=SHOWN_IN_BAR)
    assert pipe.getvalue() == "stage=1 epoch=1 loss=2\nstage=1 epoch=2 loss=2\n"


def test_terminal_formatter_names_problems_and_debug_records():
    fmt = TerminalFormatter("%(message)s")

    def record(level: int) -> logging.LogRecord:
        return logging.LogRecord("align3d_ad.x", level, __file__, 1, "msg %d", (1,), None)

    assert [fmt.format(record(lv)) for lv in (logging.DEBUG, logging.INFO, logging.WARNING,
                                               logging.ERROR)] == [  # fmt: skip
        "debug align3d_ad.x: msg 1", "msg 1", "warning: msg 1", "error: msg 1"]


def test_describe_coverage_is_one_plain_sentence():
    full = RenderCoverage(num_points=1265, num_views=9, visible_fraction=1.0,
                          mean_views_per_point=8.7549409866333, splat_radius=6.741082191467285,
                          spacing=0.04525430873)  # fmt: skip
    assert describe_coverage("bagel/test/combined/000", full, Path("d/visuals/bagel_000")) == (
        "bagel/test/combined/000: 1,265 points, 9 views, every point seen, 8.8 views per point; "
        "pictures in d/visuals/bagel_000/")
    part = RenderCoverage(12, 1, 0.99999, 0.99999, 1.0, 0.1)
    assert describe_coverage("x.ply", part) == "x.ply: 12 points, 1 view, 99.9% of points seen, " \
        "1.0 views per point"  # fmt: skip
    assert "0.1% of points seen" in describe_coverage("y", RenderCoverage(5, 2, 1e-4, 0.0, 1, 1))


def test_epoch_postfix_and_the_metrics_table():
    assert epoch_postfix({"stage": 1, "epoch": 3, "loss": 1.8093, "scr": 1.0}) == "loss=1.81, scr=on"
    assert epoch_postfix({"stage": 2, "epoch": 1, "loss_aligned": 5.2214, "loss_rendering": 3.5361,
                          "dpca": 0.0}) == "aligned=5.22, rendering=3.54"  # fmt: skip
    doc = {"categories": {"cookie": {}, "dowel": {}},
           "mean": {"object": {"o_auroc": 0.7412, "o_ap": 0.9},
                    "foreground": {"p_auroc": 0.5391, "aupro": 0.149},
                    "grid": {"p_auroc": 0.854, "aupro": math.nan}}}  # fmt: skip
    assert metrics_table(doc) == [
        "mean of 2 categories (cookie, dowel)  O-AUROC  P-AUROC    AUPRO",
        "  points only                            74.1     53.9     14.9",
        "  organised grid, background 0           74.1     85.4      n/a",
    ]
