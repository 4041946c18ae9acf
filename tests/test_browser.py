"""The book's demos in a real browser: rlgen-export web=true pages served by rlgen-serve
on 127.0.0.1 and driven in Debian's headless chromium through chromium-driver. Every
page's models give what ONNX Runtime gives in Python; the JS games equal the Python envs;
a key press moves the snake and the cart; bad input is one message on the page and one
line from the command."""

import contextlib
import io
import json
import shutil
import subprocess
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler

import numpy as np
import pytest
import torch
from conftest import BIN, call_tool, compose, missing_tool
from PIL import Image

import bench.browser as browser_tools
from bench.browser import chromium, open_page, page_call
from envs.cartpole import CartPoleEnv
from envs.snake import SnakeEnv
from nn.config import parse_key_values
from nn.export import OnnxNetwork
from nn.tools.export import ExportArgs, export_run
from nn.tools.web import serve_main
from rl import ppo, reinforce

if not (browser_tools.CHROMIUM and browser_tools.DRIVER):
    missing_tool(browser_tools.MISSING, allow_module_level=True)

from selenium.webdriver.common.keys import Keys  # noqa: E402 (only where a browser is)

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_browser")

TOLERANCE = 1e-4  # ONNX Runtime Web (wasm) against ONNX Runtime in Python: float32 kernels
PAGES = ("cartpole", "snake", "classifier", "vae", "acgan", "text")


@pytest.fixture(scope="module")
def sites(tiny_runs, tiny_exports):
    """The session's tiny runs with a page (Snake on a 6x7 board, centred view) and their
    exports with web=true."""
    return {kind: (tiny_runs[run], tiny_exports[run])
            for kind, run in ((k, "policy" if k == "cartpole" else k) for k in PAGES)}


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def python_outputs(folder, network: str, feeds: dict) -> list[np.ndarray]:
    outputs = OnnxNetwork(folder / f"{network}.onnx").session.run(None, feeds)
    return [np.asarray(o, dtype=np.float64) for o in outputs]


def page_outputs(browser, network: str, feeds: dict) -> list[np.ndarray]:
    plain = {name: {"type": str(v.dtype) if v.dtype != np.float32 else "float32",
                    "data": v.flatten().tolist(), "dims": list(v.shape)}
             for name, v in feeds.items()}
    out = page_call(browser, "rlgen.infer(args[0], args[1])", network, plain)
    assert not isinstance(out, str), out
    return [np.asarray(o["data"]).reshape(o["dims"]) for o in out]


def fixed_inputs(kind: str, manifest: dict, rng: np.random.Generator) -> dict[str, dict]:
    """Network -> inputs: real observations for the agents, random latents, images, states."""
    if kind == "cartpole":
        env = CartPoleEnv()
        obs = [env.reset(seed=i)[0] for i in range(8)]
        return {"policy": {"x": np.stack(obs).astype(np.float32)}}
    if kind == "snake":
        env = SnakeEnv(**{k: v for k, v in manifest["env"].items() if k != "_target_"})
        obs = [env.reset(seed=i)[0] for i in range(8)]
        return {"q_network": {"x": np.stack(obs)}}
    if kind == "classifier":
        return {"classifier": {"images": rng.uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)}}
    if kind == "vae":
        return {"decoder": {"z": rng.normal(0, 2, (6, 2)).astype(np.float32)},
                "encoder": {"image": rng.uniform(0, 1, (3, 784)).astype(np.float32)}}
    if kind == "acgan":
        z = rng.uniform(-1, 1, (10, manifest["latent_size"])).astype(np.float32)
        return {name: {"z": z, "classes": np.arange(10, dtype=np.int64)}
                for name in ("generator", "generator-fp16", "generator-int8")}
    width = manifest["state_size"]
    return {"step": {"token": np.array([3, 1, 4], dtype=np.int64),
                     "h": rng.normal(0, 0.5, (3, width)).astype(np.float32),
                     "c": rng.normal(0, 0.5, (3, width)).astype(np.float32)}}


@pytest.mark.parametrize("kind", PAGES)
def test_every_page_runs_its_models_as_onnx_runtime_does_in_python(sites, browser, kind, tmp_path):
    _, folder = sites[kind]
    server = open_page(browser, folder)
    assert server.started and server.error is None
    manifest = json.loads((folder / "manifest.json").read_text())
    # the page says what its controls do, said it was loading, and says it is ready
    assert len(browser.find_element("id", "help").text) > 80
    assert 'class="loading">loading the models' in (folder / "index.html").read_text()
    assert browser.find_element("id", "status").text.startswith("ready")
    # it downloaded the files it runs and no other (the VAE's page only decodes)
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name.split('/').pop())")
    wanted = {n["file"] for n in manifest["networks"]} | set(
        manifest.get("web", {}).get("extra_files", []))
    assert {f for f in fetched if f.endswith(".onnx")} == wanted - (
        {"encoder.onnx"} if kind == "vae" else set())
    for network, feeds in fixed_inputs(kind, manifest, np.random.default_rng(0)).items():
        expected = python_outputs(folder, network, feeds)
        for got, want in zip(page_outputs(browser, network, feeds), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE)
    browser.save_screenshot(str(tmp_path / "page.png"))
    picture = np.asarray(Image.open(tmp_path / "page.png").convert("L"))
    assert len(np.unique(picture)) > 20  # not blank: the page drew its canvases and text
    server.shutdown()


def test_the_pages_own_readings_match_python(sites, browser):
    """What each page shows comes from those same outputs: the VAE's decoded point, the
    classifier's bars, the ACGAN's three precisions and the cart-pole's probabilities."""
    _, folder = sites["vae"]
    server = open_page(browser, folder)
    shown = np.array(page_call(browser, "Array.from(await page.showPoint(0.5, -1))"))
    want = python_outputs(folder, "decoder", {"z": np.array([[0.5, -1]], np.float32)})[0][0]
    np.testing.assert_allclose(shown, want, atol=TOLERANCE)
    server.shutdown()
    _, folder = sites["classifier"]
    server = open_page(browser, folder)
    pixels = np.random.default_rng(1).integers(0, 256, 784)
    bars = np.array(page_call(browser, "page.show(args[0])", pixels.tolist()))
    logits = python_outputs(folder, "classifier", {
        "images": (pixels / 127.5 - 1).astype(np.float32).reshape(1, 1, 28, 28)})[0][0]
    np.testing.assert_allclose(bars, np.exp(logits) / np.exp(logits).sum(), atol=TOLERANCE)
    server.shutdown()
    _, folder = sites["acgan"]
    server = open_page(browser, folder)
    assert page_call(browser, "page.precisions") == ["generator", "generator-fp16",
                                                     "generator-int8"]
    server.shutdown()
    _, folder = sites["cartpole"]
    server = open_page(browser, folder)
    obs = [0.1, -0.2, 0.03, 0.4]
    judged = page_call(browser, "page.judge(args[0])", obs)
    logits = python_outputs(folder, "policy", {"x": np.array([obs], np.float32)})[0][0]
    want = [1 / (1 + np.exp(-logits[0])), 1 - 1 / (1 + np.exp(-logits[0]))] \
        if len(logits) == 1 else np.exp(logits) / np.exp(logits).sum()  # the book: P(left)
    np.testing.assert_allclose(judged["probabilities"], want, atol=TOLERANCE)
    greedy = int(reinforce.greedy_action(torch.tensor(logits)[None])[0])
    browser.find_element("id", "greedy").click()
    assert page_call(browser, "page.choose(await page.judge(args[0]))", obs) == greedy
    server.shutdown()


def test_the_pages_refuse_what_they_cannot_draw_cap_their_games_and_stay_current(sites,
                                                                               browser):
    """VAE: grid=1 and grid=100 drawn at 2 and 30 with a message, never NaN, and the zoom's
    z follows a new range; Snake: an agent that never eats is stopped by the page's cap
    with a game-over message, one that hits a wall too; the classifier shows nothing for a
    blank square; the cart-pole's readout describes the state a paused reset made."""
    server = open_page(browser, sites["vae"][1])
    grid = browser.find_element("id", "grid")
    for typed, drawn in (("1", "2"), ("100", "30")):  # as typed, then the field's change
        page_call(browser, "{ document.getElementById('grid').value = args[0]; "
                           "await page.drawGrid(); }", typed)
        assert grid.get_attribute("value") == drawn
        message = browser.find_element("id", "message").text
        assert message == f"grid takes 2 to 30: {typed} is outside, drawn at {drawn}"
        pixels = page_call(browser, "Array.from(document.getElementById('plane').getContext"
                                    "('2d').getImageData(0, 0, 560, 560).data)")
        assert len(set(pixels)) > 10  # decoded images, not a plane of NaN-black
    page_call(browser, "page.showAt(1, 0)")
    assert browser.find_element("id", "readout").text == "z = (4.00, 4.00)"
    page_call(browser, "{ document.getElementById('range').value = '10'; await page.drawGrid(); }")
    assert browser.find_element("id", "readout").text == "z = (10.00, 10.00)"
    server.shutdown()

    server = open_page(browser, sites["snake"][1])
    browser.find_element("id", "pause").click()
    hungry = page_call(browser, "page.hungry")  # the run's own cap, else 4 passes of the board
    algo = json.loads((sites["snake"][1] / "manifest.json").read_text())["config"]["algo"]
    assert hungry == (algo.get("eval_max_steps_without_reward") or 4 * 6 * 7)
    # first a game ends at a wall (its message stands until the next tick), then
    page_call(browser, "{ while (page.loop.busy) await new Promise((r) => setTimeout(r, 10)); "
                       "await page.reset(); }")
    ended = page_call(browser, "{ for (let i = 0; i < 20 && !page.ended(); i++) "
                               "await page.tick(0); return page.ended(); }")
    assert ended.startswith("game over: the agent crashed")  # straight into a wall
    # an agent that never eats: a one-square snake on a board without fruit, turning left
    # at every step, circles four squares in the middle of the board for ever. Set up once
    # the paused loop's last tick has ended, on a fresh game (a game the loop ended before
    # the pause would leave its game-over message standing)
    ended = page_call(browser, "{ while (page.loop.busy) await new Promise((r) => "
                               "setTimeout(r, 10)); await page.reset(); const env = page.env; "
                               "env.fruits = []; env.heading = 0; "
                               "env.snake = [[env.height >> 1, env.width >> 1]]; "
                               "for (let i = 0; i < 3 * page.hungry && !page.ended(); i++) "
                               "await page.tick(1); return page.ended(); }")
    assert ended.startswith(f"game over: no fruit in {hungry} steps")
    assert ended in browser.find_element("id", "readout").text
    server.shutdown()

    server = open_page(browser, sites["classifier"][1])
    assert browser.find_element("id", "bars").text == "draw a digit on the black square"
    server.shutdown()

    server = open_page(browser, sites["cartpole"][1])
    browser.find_element("id", "pause").click()
    for _ in range(3):
        page_call(browser, "page.reset()")
        judged = page_call(browser, "page.judge(page.env.observation())")
        shown = browser.find_element("id", "readout").text.splitlines()[1]
        assert shown == (f"P(push left) {judged['probabilities'][0]:.3f}  "
                         f"P(push right) {judged['probabilities'][1]:.3f}")
    server.shutdown()


def test_the_text_page_writes_pythons_greedy_text_and_refuses_unknown_characters(sites,
                                                                                    browser):
    run_dir, folder = sites["text"]
    manifest = json.loads((folder / "manifest.json").read_text())
    seed = manifest["seed_text"][:40]
    by_python = call_tool("rlgen-generate", f"run={run_dir}", f"seed_text={seed}",
                          "length=200", "temperature=0").stdout[:-1]  # less print's newline
    server = open_page(browser, folder)
    assert page_call(browser, "page.generate(args[0], 200, 0)", seed) == by_python
    outside = next(ch for ch in "\u00e9\u4e2d~#@" if ch not in manifest["vocabulary"])
    refused = page_call(browser, "page.generate(args[0], 5, 0)", f"ab{outside}")
    assert refused.startswith("ERROR") and "never saw" in refused and outside in refused
    browser.find_element("id", "seed").clear()
    browser.find_element("id", "seed").send_keys(f"x{outside}")
    browser.find_element("id", "generate").click()
    time.sleep(0.3)
    assert "never saw" in browser.find_element("id", "message").text
    server.shutdown()


def test_a_key_press_moves_the_snake_and_the_cart(sites, browser):
    _, folder = sites["snake"]
    server = open_page(browser, folder)
    browser.find_element("id", "pause").click()  # paused: each press is one move
    page_call(browser, "page.env.reset({snake: [[3, 3], [3, 2]], fruits: [[0, 0]], heading: 0})")
    browser.find_element("tag name", "body").send_keys(Keys.ARROW_UP)
    time.sleep(0.3)
    assert page_call(browser, "[page.env.snake, page.env.heading]") == [[[2, 3], [3, 3]], 1]
    server.shutdown()
    _, folder = sites["cartpole"]
    server = open_page(browser, folder)
    browser.find_element("id", "pause").click()
    page_call(browser, "page.env.reset([0, 0, 0, 0])")
    browser.find_element("tag name", "body").send_keys(Keys.ARROW_LEFT)
    time.sleep(0.3)
    x, x_dot, _, _ = page_call(browser, "page.env.state")
    assert x == 0 and x_dot < 0  # pushed left: the cart starts moving left
    server.shutdown()


PPO_RUNS = {"cartpole": ["experiment=cartpole_ppo", "algo.total_steps=512"],
            "snake": ["experiment=snake_ppo", "env.height=6", "env.width=7", "env.view=centred",
                      "model.channels=[8,8]", "model.hidden_sizes=[16]", "algo.num_envs=8",
                      "algo.rollout_steps=32", "algo.total_steps=256"]}


def test_the_cart_pole_and_snake_pages_play_a_ppo_policy(browser, tmp_path):
    for kind, overrides in PPO_RUNS.items():
        run_dir = tmp_path / kind
        ppo.train(compose(*overrides, "device=cpu"), run_dir)
        folder = export_run(parse_key_values(ExportArgs, [
            f"run={run_dir}", "web=true", f"out={tmp_path / f'{kind}_site'}"]))
        server = open_page(browser, folder)
        assert server.started and server.error is None, server.error
        if kind == "cartpole":  # the policy's softmax, and its likeliest push when greedy
            obs = [0.1, -0.2, 0.03, 0.4]
            logits = python_outputs(folder, "policy", {"obs": np.array([obs], np.float32)})[0][0]
            judged = page_call(browser, "page.judge(args[0])", obs)
            np.testing.assert_allclose(judged["probabilities"],
                                       np.exp(logits) / np.exp(logits).sum(), atol=TOLERANCE)
            browser.find_element("id", "greedy").click()
            assert page_call(browser, "page.choose(await page.judge(args[0]))", obs) == \
                int(np.argmax(logits))
        else:  # the agent moves by its policy's likeliest move, shown as logits
            browser.find_element("id", "pause").click()
            # once the paused loop's last tick has ended, a fresh game (the board read
            # below is then the one the next tick moves on)
            page_call(browser, "{ while (page.loop.busy) await new Promise((r) => "
                               "setTimeout(r, 10)); await page.reset(); }")
            board = np.array(page_call(browser, "Array.from(page.env.observation())"), np.uint8)
            shape = page_call(browser, "page.env.observationShape()")
            logits = python_outputs(folder, "policy", {"obs": board.reshape(1, *shape)})[0][0]
            np.testing.assert_allclose(page_call(browser, "page.qValues()"), logits,
                                       atol=TOLERANCE)
            assert page_call(browser, "page.tick()") == int(np.argmax(logits))
            assert "logits:" in browser.find_element("id", "readout").text
        server.shutdown()


def test_the_js_cart_pole_equals_the_python_env(sites, browser):
    """1,000+ steps of random pushes from random starts: every state, reward and end."""
    _, folder = sites["cartpole"]
    server = open_page(browser, folder)
    env, rng, games, steps = CartPoleEnv(max_steps_per_game=200), np.random.default_rng(0), [], 0
    while steps < 1000:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        game = {"start": list(env.state), "actions": [], "states": [], "rewards": [], "ends": []}
        done = False
        while not done:
            action = int(rng.integers(2))
            _, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            game["actions"].append(action)
            game["states"].append(list(env.state))
            game["rewards"].append(reward)
            game["ends"].append([terminated, truncated])
            steps += 1
        games.append(game)
    by_js = page_call(browser, """args[0].map((game) => {
        const env = new rlgen.envs.CartPole(args[1]);
        env.reset(game.start);
        return game.actions.map((a) => {
            const r = env.step(a);
            return [env.state, r.reward, [r.terminated, r.truncated]];
        });
    })""", games, {**env_config(env), "max_steps_per_game": 200})
    for game, js in zip(games, by_js, strict=True):
        np.testing.assert_allclose([s for s, _, _ in js], game["states"], rtol=1e-12, atol=1e-12)
        assert [r for _, r, _ in js] == game["rewards"] and [e for _, _, e in js] == game["ends"]
    server.shutdown()


def env_config(env: CartPoleEnv) -> dict:
    p = env.physics
    return {"gravity": p.gravity, "cart_mass": p.cart_mass, "pole_mass": p.pole_mass,
            "pole_half_length": p.pole_half_length, "force_mag": p.force_mag, "tau": p.tau,
            "x_threshold": p.x_threshold, "theta_threshold_degrees": 12.0, "start_x": 0.5,
            "start_x_dot": 0.5, "start_theta_degrees": 6.0, "start_theta_dot": 0.25}


@pytest.mark.parametrize("view,height,width", [("board", 9, 9), ("turned", 5, 8),
                                               ("centred", 7, 6)])
def test_the_js_snake_equals_the_python_env(sites, browser, view, height, width):
    """1,000+ random moves, the fruit placements Python drew injected into the JS game:
    the same observations (the network's input), rewards and ends."""
    _, folder = sites["snake"]
    server = open_page(browser, folder)
    config = {"height": height, "width": width, "num_fruits": 2, "init_len": 3,
              "max_steps_per_game": 150, "reward_fruit": 10.0, "reward_step": -0.2,
              "reward_death": -10.0, "view": view}
    env, rng, games, steps = SnakeEnv(**config), np.random.default_rng(1), [], 0
    placed = []
    place = env._place_fruit

    def recorded_place():  # the square Python draws for each new fruit
        before = set(env.fruits)
        place()
        placed.extend([list(square) for square in env.fruits - before])

    env._place_fruit = recorded_place
    while steps < 1000:
        env.reset(seed=int(rng.integers(1 << 30)))
        placed.clear()
        game = {"start": {"snake": [list(s) for s in env.snake], "heading": env.heading,
                          "fruits": [list(f) for f in env.fruits]},
                "actions": [], "observations": [], "rewards": [], "ends": []}
        done = False
        while not done:
            action = fruit_seeking(env, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            game["actions"].append(action)
            game["observations"].append(obs.flatten().tolist())
            game["rewards"].append(reward)
            game["ends"].append([terminated, truncated])
            steps += 1
        game["fruit_queue"] = list(placed)
        games.append(game)
    assert sum(r == 10.0 for g in games for r in g["rewards"]) > 50  # long snakes too
    by_js = page_call(browser, """args[0].map((game) => {
        const env = new rlgen.envs.Snake(args[1]);
        env.reset(game.start);
        env.fruitQueue = game.fruit_queue.map((s) => [...s]);
        return game.actions.map((a) => {
            const r = env.step(a);
            return [Array.from(env.observation()), r.reward, [r.terminated, r.truncated]];
        });
    })""", games, config)
    for game, js in zip(games, by_js, strict=True):
        assert [o for o, _, _ in js] == game["observations"]
        assert [r for _, r, _ in js] == game["rewards"] and [e for _, _, e in js] == game["ends"]
    server.shutdown()


def fruit_seeking(env: SnakeEnv, rng: np.random.Generator) -> int:
    """Mostly the move that nears a fruit without dying at once, sometimes any move: games
    long enough for long snakes, and every kind of end."""
    if rng.random() < 0.15:
        return int(rng.integers(3))

    def cost(square):
        y, x = square
        dies = not (0 <= y < env.height and 0 <= x < env.width) or square in env.snake
        return (dies, min(abs(y - fy) + abs(x - fx) for fy, fx in env.fruits))

    costs = [cost(square) for square in env.next_head_squares()]
    return costs.index(min(costs))


class NoManifest(SimpleHTTPRequestHandler):
    """A static host that lacks one file (as a half-copied site would)."""

    missing = "manifest.json"

    def do_GET(self):
        if self.path.lstrip("/") == self.missing:
            self.send_error(404)
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


class NoModel(NoManifest):
    missing = "classifier.onnx"


def test_bad_input_is_one_message_on_the_page_and_one_line_from_the_command(sites, browser,
                                                                             tmp_path):
    _, folder = sites["classifier"]
    server = open_page(browser, folder, NoManifest)
    assert server.error.startswith("not an rlgen export") and "web=true" in server.error
    assert browser.find_element("id", "status").text == server.error
    server.shutdown()
    server = open_page(browser, folder, NoModel)
    assert "classifier.onnx is missing on the server (HTTP 404)" in server.error
    server.shutdown()
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "classifier.onnx").write_bytes(b"not a model")
    server = open_page(browser, broken)
    assert server.error.startswith("could not load classifier.onnx")
    server.shutdown()
    # the command: a folder that is not an export, an export without its page, a bad port
    no_page = tmp_path / "no_page"
    shutil.copytree(folder, no_page, ignore=shutil.ignore_patterns("index.html"))
    for argv, words in (([str(tmp_path)], "is not an rlgen export"), ([str(no_page)], "web=true"),
                        ([str(folder), "port=70000"], "port")):
        code, stderr = serve_command(*argv)
        assert code == 2 and stderr.count("\n") == 1 and words in stderr


def serve_command(*argv: str) -> tuple[int, str]:
    """rlgen-serve run in this process, for the arguments it refuses: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        serve_main(list(argv))
    return stop.value.code, err.getvalue()


def test_rlgen_serve_prints_its_url_and_serves_on_localhost(sites):
    _, folder = sites["text"]
    serving = subprocess.Popen([str(BIN / "rlgen-serve"), str(folder)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = serving.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "ort/ort.wasm.min.js" in page
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "missing.onnx", timeout=10)
    finally:
        serving.terminate()
        _, errors = serving.communicate(timeout=10)
    assert errors.strip().splitlines() == ["rlgen-serve: /missing.onnx: code 404, message File "
                                           "not found"]


def test_the_site_is_self_contained_with_relative_paths(sites):
    _, folder = sites["acgan"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["web"]["precisions"] == {"none": "generator.onnx",
                                             "fp16": "generator-fp16.onnx",
                                             "int8": "generator-int8.onnx"}
    for name in manifest["web"]["pages"] + manifest["web"].get("extra_files", []):
        assert (folder / name).is_file()
    for source in folder.glob("**/*.js"):
        assert "http://" not in source.read_text() or source.name.startswith("ort")
