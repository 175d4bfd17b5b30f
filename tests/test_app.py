"""The web app in a real headless browser (Debian's chromium + chromedriver via Selenium).

The app runs as ``python -m fast_timesformer app`` in a subprocess on a free port, with a tiny weights folder
laid out like the demo's output (``DEMO/weights`` beside ``DEMO/data/val/manifest.csv``). Screenshots go to
``$FAST_TIMESFORMER_SCREENSHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def make_demo_folder(root: Path) -> Path:
    """A demo-like folder: 4 validation clips of the motion dataset and an untrained tiny model's weights."""
    from fast_timesformer.data.synthetic import MOTION_CLASSES, generate_motion_dataset

    generate_motion_dataset(
        root / "data", num_videos={"val": 4}, splits=("val",), num_frames=8, size=16, hold=1, seed=0
    )
    torch.manual_seed(0)
    model = FastTimeSformer(
        num_frames=8, num_classes=4, image_size=16, patch_size=8, dim=32, depth=2, heads=2, dim_head=16,
        pos_emb="rotary",
    ).eval()  # fmt: skip
    prep = Preprocessing(num_frames=8, sampling_rate=1, crop_size=16, short_side=16, num_spatial_crops=1)
    model.save_pretrained(root / "weights", preprocessing=prep, class_names=list(MOTION_CLASSES))
    return root / "weights"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_options_are_checked_before_anything_is_served(tmp_path, capsys):
    assert main(["app", "--weights", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fast-timesformer app: error:") and "missing" in err[0]
    for port in ("0", "99999", "http"):
        assert main(["app", "--weights", str(tmp_path), "--port", port]) == 2
        assert "argument --port: " in capsys.readouterr().err
    assert main(["app", "--weights", str(tmp_path), "--device", "bogus"]) == 1
    assert "--device" in capsys.readouterr().err


def test_a_port_in_use_is_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    weights = make_demo_folder(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--weights", str(weights), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == f"fast-timesformer app: error: port {port} on 127.0.0.1 is in use; pick another with --port"
    )


def test_analyser_guards_each_view_and_refuses_bad_uploads(tmp_path):
    pytest.importorskip("gradio", reason="the app needs the [app] extra (Gradio)")
    from fast_timesformer.app import Analyser, UploadError, demo_videos
    from fast_timesformer.inference import Predictor

    weights = make_demo_folder(tmp_path / "demo")
    examples = demo_videos(weights)
    assert [label.split(" / ")[0] for label, _ in examples] == [
        "left_blue_first", "left_red_first", "right_blue_first", "right_red_first"
    ]  # fmt: skip
    analyser = Analyser([weights], workdir=tmp_path / "work", max_upload_mb=0.001, timeline=False)
    video = examples[1][1]
    with pytest.raises(UploadError, match="upload limit"):  # a few kB over a 1 kB limit
        analyser.analyse(video)
    analyser.max_upload_mb = 10
    short = Analyser([weights], workdir=tmp_path / "work", max_upload_seconds=0.1, explain=False)
    with pytest.raises(UploadError, match="duration"):
        short.analyse(video)
    _, (result,) = analyser.analyse(video)
    expected = Predictor.from_pretrained(weights).classify([video], top_k=4)[0][0]["predictions"]
    assert [p["label"] for p in result.predictions] == [p["label"] for p in expected]
    assert Path(result.attention_png).is_file() and Path(result.attention_mp4).is_file()
    assert Path(result.attention_png).is_relative_to(tmp_path / "work") and not result.problems
    assert set(result.timings) == {"check", "top-k", "attention"}


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="no chromium + chromedriver: run .ci/install-browser"
)
def test_app_in_a_headless_browser(tmp_path):
    pytest.importorskip("gradio", reason="the app needs the [app] extra (Gradio): run .ci/install-browser")
    pytest.importorskip("selenium", reason="the browser test needs selenium: run .ci/install-browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fast_timesformer.inference import Predictor

    shots = Path(os.environ.get("FAST_TIMESFORMER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    weights = make_demo_folder(tmp_path / "demo")
    video = tmp_path / "upload.mp4"
    shutil.copy(next((tmp_path / "demo" / "data" / "val" / "left_red_first").glob("*.mp4")), video)
    expected = Predictor.from_pretrained(weights).classify([video], top_k=1)[0][0]["predictions"][0]["label"]
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n")

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen(
        [sys.executable, "-m", "fast_timesformer", "app", "--weights", str(weights), "--port", str(port),
         "--no-timeline"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    workdir = None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(flag)
    driver = None
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serving on" not in line:
            line = app.stdout.readline()
            assert line or app.poll() is None, f"the app exited with {app.poll()}"
            assert time.monotonic() < deadline, "the app did not start within 120 s"
        assert f"http://127.0.0.1:{port}" in line  # 127.0.0.1 by default
        workdir = Path(line.rsplit("temporary files in ", 1)[1].strip())
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        assert "demo validation video" in driver.find_element(By.ID, "pick").text  # the demo's files offered

        upload.send_keys(str(video))
        wait.until(lambda d: "analysed by 1 model" in d.find_element(By.ID, "status").text)
        top_k = driver.find_element(By.ID, "top-k-0").text
        lines = [line for line in top_k.splitlines() if line != "top-k labels"]  # the component's label
        assert lines[0] == expected and "%" in top_k, top_k  # gr.Label: the top class first, then the bars
        info = driver.find_element(By.ID, "info-0").text
        assert "8x1, 1 clip x 1 crop, 16px" in info and "Time per step" in info and "attention" in info
        rendered = wait.until(
            lambda d: d.execute_script(
                "const i = document.querySelector('#attention-0 img'); return i && i.complete && i.naturalWidth;"
            )
        )
        assert rendered > 100  # the strip of frames with heatmaps, decoded by the browser
        clip = driver.execute_script(
            "const v = document.querySelector('#attention-clip-0 video'); return v && v.src;"
        )
        assert clip  # the overlay clip is in the page
        driver.save_screenshot(str(shots / "app-result.png"))
        assert any((workdir / "uploads").rglob("upload.mp4"))  # the upload went into our temporary folder

        driver.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        upload.send_keys(str(text))
        wait.until(lambda d: "Cannot use this file" in d.find_element(By.ID, "status").text)
        status = driver.find_element(By.ID, "status").text
        assert "notes.mp4 is not a video" in status and "Traceback" not in driver.page_source
        driver.save_screenshot(str(shots / "app-not-a-video.png"))
    finally:
        if driver is not None:
            driver.quit()
        app.terminate()
        output = app.communicate(timeout=60)[0]
    assert app.returncode in (0, 130), output
    assert workdir is not None and not workdir.exists(), f"{workdir} was not removed"
