"""The zoo against a fake Hub on 127.0.0.1 driven by the real huggingface_hub client (no real network)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakehub import FakeHub
from runtime.cli import main as runtime_cli
from zoo.cli import main as zoo
from zoo.files import sha256_file

SAMPLING = {"config.json", "README.md", "preview.png", "quality.json", "onnx/generator.onnx",
            "onnx/generator.fp16.onnx", "training/frame-000.png", "training/mask-000.png"}   # frames: for trainer eval


@pytest.fixture(scope="module")
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture
def hub(fake_hub, entry, tmp_path, monkeypatch):
    """A fresh repo org/scene (main + branch dev) on the fake Hub, an empty cache and an index naming it."""
    fake_hub.repos.pop("org/scene", None)
    fake_hub.served.clear()
    fake_hub.hostile.clear()
    fake_hub.hang = 0.0
    fake_hub.status = None
    dev = fake_hub.commit_folder("org/scene", entry, branch="dev")
    sha = fake_hub.commit_folder("org/scene", entry)   # main: the same files, a newer commit
    files = {p: {"sha256": sha256_file(entry / p), "bytes": (entry / p).stat().st_size}
             for p in SAMPLING | {"model.safetensors"}}
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"format": "oneshot-gan-index/1",
                                 "scenes": {"scene": {"repo": "org/scene", "revision": sha, "files": files}}}))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ONESHOT_GAN_INDEX", str(index))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub.requests.clear()
    fake_hub.sha, fake_hub.dev, fake_hub.index = sha, dev, index
    return fake_hub


def run(*args, cli=zoo, env=None):
    res = CliRunner().invoke(cli, list(args), env=env)
    return res


def pulled_files(hub):
    return {p.split("/resolve/")[1].split("/", 1)[1] for m, p in hub.requests if m == "GET" and "/resolve/" in p}


def test_pull_by_name_fetches_only_sampling_files_then_works_offline(hub, tmp_path):
    res = run("pull", "scene", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["revision"] == hub.sha and data["repo"] == "org/scene"
    assert pulled_files(hub) == SAMPLING           # no weights, no checkpoint
    hub.requests.clear()
    assert run("pull", "scene", "-q").exit_code == 0   # pinned commit already complete: no request
    out = tmp_path / "samples"
    res = run("sample", "scene", "--count", "3", "--out", str(out), "--workers", "0", "-q", cli=runtime_cli,
              env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 0, res.output
    assert hub.requests == []
    info = json.loads((out / "dataset.json").read_text())
    assert info["scene"] == "scene" and info["repo"] == "org/scene" and info["revision"] == hub.sha


def test_a_pull_fetches_only_the_files_an_entry_can_list(hub, entry, tmp_path):
    """The pattern onnx/*.onnx also matched onnx/sub/dir/x.onnx (issue 12, low)."""
    repo = tmp_path / "repo"
    shutil.copytree(entry, repo)
    (repo / "onnx/sub/dir").mkdir(parents=True)
    (repo / "onnx/sub/dir/x.onnx").write_bytes(b"a large file nobody asked for")
    hub.commit_folder("org/scene", repo, branch="extra")
    res = run("pull", "org/scene@extra", "-q")
    assert res.exit_code == 0, res.output
    assert pulled_files(hub) == SAMPLING


def test_pull_by_repo_branch_and_commit(hub):
    for scene, sha in [("org/scene", hub.sha), ("org/scene@dev", hub.dev), (f"org/scene@{hub.dev}", hub.dev)]:
        res = run("pull", scene, "--json")
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        assert data["revision"] == sha and Path(data["path"]).name == sha
    res = run("pull", "org/scene@dev", "--weights", "--json")
    assert res.exit_code == 0 and "model.safetensors" in pulled_files(hub)


def test_offline_pull_of_an_unpulled_scene_is_one_line(hub):
    res = run("pull", "scene", "--offline")
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "not in the local cache and offline mode is on" in res.output
    res = run("info", "--json", "scene")   # index scenes not pulled yet: what the index knows, no request
    assert res.exit_code == 0 and json.loads(res.output)["pulled"] is False
    assert hub.requests == []


def test_tampered_download_fails_the_hash_check(hub):
    hub.served["org/scene/onnx/generator.onnx"] = b"not the model"
    res = run("pull", "scene", "-q")   # -q: the progress bar (stderr) would make a second line
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "onnx/generator.onnx fails its sha256 check" in res.output and "zoo pull --force scene" in res.output
    hub.served.clear()
    res = run("pull", "scene", "--force", "-q")   # the repaired download passes
    assert res.exit_code == 0, res.output


def _files_outside(root: Path, cache: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if not p.is_relative_to(cache) and not p.is_dir()}


ESCAPE = "../../../pwned"   # from <cache>/models--org--scene/blobs/ (or snapshots/, .no_exist/) to tmp_path


@pytest.mark.parametrize("hostile", [
    {"ETag": f'"{ESCAPE}"'}, {"X-Linked-Etag": f'"{ESCAPE}"'}, {"X-Repo-Commit": ESCAPE},
    {"sha": ESCAPE}, {"tree": {"path": ESCAPE}}, {"tree": {"oid": ESCAPE}},
    {"tree": {"lfs": {"oid": ESCAPE, "size": 1, "pointerSize": 1}}}, {"ETag": '"abc/def"'}])
@pytest.mark.parametrize("scene", ["scene", "org/scene@dev"])
def test_a_hostile_endpoint_cannot_write_outside_the_cache(hub, tmp_path, hostile, scene):
    """A crafted ETag or commit once made huggingface_hub write the server's bytes outside the cache
    (issue 12, high 2): every header and listing field that becomes a path is checked before anything is written."""
    hub.hostile.update(hostile)
    before = _files_outside(tmp_path, tmp_path / "cache")
    res = run("pull", scene, "-q")
    if "sha" in hostile and scene == "scene":   # a pinned commit needs no repository info: never asked
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert "refused an unsafe answer from " + hub.endpoint in res.output, res.output
    assert _files_outside(tmp_path, tmp_path / "cache") == before
    assert not any((tmp_path / "cache").rglob("*pwned*"))


def test_a_missing_file_answer_cannot_plant_files(hub, tmp_path):
    hub.repos["org/scene"].missing.add("quality.json")
    hub.hostile["X-Repo-Commit"] = ESCAPE
    before = _files_outside(tmp_path, tmp_path / "cache")
    assert run("pull", "org/scene").exit_code == 1
    assert _files_outside(tmp_path, tmp_path / "cache") == before


def test_the_model_card_is_hash_checked_too(hub, entry, tmp_path):
    """README.md was the one file a pull took unchecked (issue 12, high 2): an export lists it in config.json."""
    assert json.loads((entry / "config.json").read_text())["files"]["README.md"]["sha256"] == sha256_file(entry / "README.md")
    hub.served["org/scene/README.md"] = b"---\nlicense: mit\n---\n# a card the server made up\n"
    res = run("pull", "org/scene@dev", "-q")
    assert res.exit_code == 1 and "README.md fails its sha256 check" in res.output, res.output
    # an entry whose config.json does not list its card (exported before) is refused from the Hub
    repo = tmp_path / "old"
    shutil.copytree(entry, repo)
    config = json.loads((repo / "config.json").read_text())
    del config["files"]["README.md"]
    (repo / "config.json").write_text(json.dumps(config))
    hub.commit_folder("org/scene", repo, branch="old")
    res = run("pull", "org/scene@old", "-q")
    assert res.exit_code == 1 and "README.md has no sha256" in res.output, res.output


def test_cached_files_must_link_into_blobs(hub, tmp_path):
    res = run("pull", "org/scene", "--json")
    snapshot = Path(json.loads(res.output)["path"])
    card = snapshot / "README.md"
    elsewhere = tmp_path / "card.md"
    shutil.copyfile(card, elsewhere)   # the same bytes, outside the cache
    card.unlink()
    card.symlink_to(elsewhere)
    res = run("pull", "org/scene", "--offline", "-q")
    assert res.exit_code == 1 and "README.md points outside the cache" in res.output, res.output


def test_a_hub_that_never_answers_is_given_up_on(hub):
    """zoo pull waited forever for a server that accepts the connection and never answers (issue 12, medium 9)."""
    import time

    hub.hang = 6.0
    t0 = time.monotonic()
    res = run("pull", "org/scene", "--timeout", "1", "-q")
    assert time.monotonic() - t0 < 4
    assert res.exit_code == 1 and "did not finish answering within 1 s" in res.output and "--timeout" in res.output
    res = run("pull", "org/scene", "--timeout", "0")
    assert res.exit_code == 1 and "Invalid value for '--timeout'" in res.output


@pytest.mark.parametrize("trouble", ["500", "503", "down"])
def test_a_branch_pull_says_when_the_hub_cannot_be_asked(hub, tmp_path, monkeypatch, trouble):
    """A branch pull with the server down returned the cached commit silently; a 500 was reported as "cannot
    reach"; a 503 with a partial cache suggested --force (issue 12, low)."""
    def in_trouble():
        if trouble == "down":
            monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # nothing listens there
        else:
            hub.status = int(trouble)

    def healthy():
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        hub.status = None

    said = "cannot reach" if trouble == "down" else f"answered {trouble} (a server error): try again later"
    in_trouble()
    res = run("pull", "org/scene", "-q")                       # nothing cached
    assert res.exit_code == 1 and said in res.output and "--force" not in res.output, res.output
    healthy()
    assert run("pull", "org/scene", "-q").exit_code == 0
    in_trouble()
    res = run("pull", "org/scene", "--json")                   # cached: used, and said so
    assert res.exit_code == 0 and json.loads(res.output.splitlines()[-1])["revision"] == hub.sha, res.output
    assert "warning: org/scene: " in res.output and said in res.output and "of main, which may be behind" in res.output
    snapshot = tmp_path / "cache/models--org--scene/snapshots" / hub.sha
    (snapshot / "preview.png").unlink()                        # a partial cache: not used, not blamed
    res = run("pull", "org/scene", "-q")
    assert res.exit_code == 1 and said in res.output and "--force" not in res.output, res.output


def test_tampered_or_deleted_cache_file_is_detected(hub, tmp_path):
    res = run("pull", "org/scene", "--json")
    snapshot = Path(json.loads(res.output)["path"])
    blob = (snapshot / "onnx/generator.onnx").resolve()
    blob.write_bytes(b"changed")
    res = run("sample", "org/scene", "--count", "1", "--out", str(tmp_path / "o"), cli=runtime_cli)
    assert res.exit_code == 1 and "fails its sha256 check" in res.output and "--force" in res.output
    blob.unlink()
    res = run("verify", "org/scene")
    assert res.exit_code == 1 and "onnx/generator.onnx is missing" in res.output
    assert run("pull", "org/scene", "--force", "-q").exit_code == 0
    assert run("verify", "org/scene").exit_code == 0


@pytest.mark.parametrize("scene,args,expect", [
    ("org/none", [], "no such repository"),
    ("org/scene@nope", [], "no such revision"),
    ("org/private", [], "not authorized (401); it is private, gated or missing: pass --token"),
    ("org/private", ["--token", "wrong"], "not authorized (401); the token was refused"),
    ("org/holey", [], "missing on"),
    ("org/empty", [], "not a scene entry (no config.json)"),
])
def test_hub_errors_are_distinct_one_liners(hub, entry, scene, args, expect):
    hub.commit_folder("org/private", entry)
    hub.repos["org/private"].token = "secret"
    hub.commit_folder("org/holey", entry)
    hub.repos["org/holey"].missing = {"preview.png"}
    hub.commit("org/empty", {"README.md": b"# nothing"})
    res = run("pull", scene, *args)
    assert res.exit_code == 1 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert expect in res.output


def test_private_repo_with_token(hub, entry):
    hub.commit_folder("org/private", entry)
    hub.repos["org/private"].token = "secret"
    assert run("pull", "org/private", "--token", "secret", "-q").exit_code == 0


def test_concurrent_pulls_do_not_corrupt_the_cache(hub):
    cmd = [sys.executable, "-m", "zoo.cli", "pull", "scene", "-q"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE) for _ in range(3)]
    assert all(p.wait(120) == 0 for p in procs), [p.stderr.read() for p in procs]
    assert run("verify", "scene").exit_code == 0


def test_index_rejects_traversal_and_unpinned_entries(hub, tmp_path):
    for bad, expect in [({"repo": "org/scene", "revision": hub.sha, "files": {"../x": {"sha256": "0" * 64}}},
                         "escapes the entry folder"),
                        ({"repo": "org/scene", "revision": "main", "files": {}}, "pinned 40-hex commit"),
                        ({"repo": "../../etc", "revision": hub.sha, "files": {}}, "repo must look like org/name"),
                        ({"bundled": "../../../etc", "files": {}}, "bundled must name a scene shipped"),
                        ({"bundled": "nonexistent", "files": {}}, "bundled must name a scene shipped"),
                        ({"path": "../../etc", "files": {"config.json": {"sha256": "0" * 64}}},
                         "escapes the entry folder"),
                        ({"path": "scene", "files": {}}, "files must include config.json's sha256")]:
        hub.index.write_text(json.dumps({"format": "oneshot-gan-index/1", "scenes": {"evil": bad}}))
        res = run("pull", "evil")
        assert res.exit_code == 1 and expect in res.output, res.output


def test_entry_symlinks_out_of_the_folder_are_rejected(entry, tmp_path):
    evil = tmp_path / "evil"
    shutil.copytree(entry, evil)
    (evil / "preview.png").unlink()
    (evil / "preview.png").symlink_to("/etc/hostname")
    res = run("verify", str(evil))
    assert res.exit_code == 1 and "points outside the entry folder" in res.output


def test_index_from_a_hub_repo(hub, tmp_path):
    sha = hub.commit("org/indexes", {"scenes.json": hub.index.read_bytes()})
    res = run("pull", "scene", "--index", f"hf://org/indexes@{sha}/scenes.json", "--json",
              env={"ONESHOT_GAN_INDEX": None})
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["revision"] == hub.sha
    # entries by folder are for local index files only: a downloaded index cannot point at local paths
    by_path = {"format": "oneshot-gan-index/1", "scenes": {"mine": {"path": "x", "files": {"config.json": {"sha256": "0" * 64}}}}}
    sha = hub.commit("org/indexes", {"scenes.json": json.dumps(by_path).encode()})
    res = run("pull", "mine", "--index", f"hf://org/indexes@{sha}/scenes.json", env={"ONESHOT_GAN_INDEX": None})
    assert res.exit_code == 1 and "a path entry is only allowed in a local index file" in res.output, res.output


def test_list_info_and_rm(hub):
    run("pull", "scene", "-q")
    run("pull", "org/scene@dev", "-q")
    rows = {r["name"]: r for r in json.loads(run("list", "--json").output)["scenes"]}
    assert rows["coins"]["source"] == "bundled" and rows["scene"]["pulled"]
    assert rows[f"org/scene@{hub.dev[:12]}"]["refs"] == ["dev"]
    info = json.loads(run("info", "scene", "--json").output)
    assert info["revision"] == hub.sha and "onnx/generator.fp16.onnx" in info["files"]
    assert all(len(f["sha256"]) == 64 for f in info["files"].values())
    res = run("rm", "scene", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["revisions"] == [hub.sha]
    assert not json.loads(run("list", "--json").output)["scenes"][1]["pulled"]
    assert run("rm", "coins").exit_code == 1 and run("rm", "scene").exit_code == 1


def test_verify_catches_broken_entries(entry, tmp_path):
    assert run("verify", str(entry)).exit_code == 0
    cases = {
        "hash": (lambda d: (d / "preview.png").write_bytes(b"x"), "preview.png fails its sha256 check"),
        "card": (lambda d: ((d / "README.md").write_text("# no metadata\n"), _rehash(d, "README.md")),
                 "model card metadata lacks"),
        "schema": (lambda d: (d / "config.json").write_text('{"format": "oneshot-gan-entry/1"}'), "missing or invalid"),
    }
    for name, (damage, expect) in cases.items():
        broken = tmp_path / name
        shutil.copytree(entry, broken)
        damage(broken)
        res = run("verify", str(broken))
        assert res.exit_code == 1 and expect in res.output and res.output.count("\n") == 1, res.output


def _deep(n):
    return "[" * n + "]" * n


TAMPERED = {   # config.json changes that once ended in tracebacks or silently wrong samples (issue 12, 11 + low)
    "deep nesting": lambda c: _deep(100_000),
    "null byte in a file name": lambda c: {**c, "files": {**c["files"], "a\u0000b": c["files"]["preview.png"]}},
    "sha256 as a number": lambda c: {**c, "files": {**c["files"], "preview.png": {"sha256": 12, "bytes": 1}}},
    "sha256 missing": lambda c: {**c, "files": {**c["files"], "preview.png": {"bytes": 1}}},
    "bytes as a string": lambda c: {**c, "files": {**c["files"], "preview.png": {**c["files"]["preview.png"],
                                                                                 "bytes": "many"}}},
    "class names not strings": lambda c: {**c, "classes": {**c["classes"], "names": [1, 2, 3]}},
    "training missing": lambda c: {k: v for k, v in c.items() if k != "training"},
    "training a string": lambda c: {**c, "training": "yes"},
    "noise_dim true": lambda c: {**c, "model": {**c["model"], "noise_dim": True}},
    "noise_dim 1e9": lambda c: {**c, "model": {**c["model"], "noise_dim": 10**9}},
    "grid 1e9": lambda c: {**c, "latent": {**c["latent"], "trained_grid": [10**9, 5]}},
    "lying pixels_per_cell": lambda c: {**c, "latent": {**c["latent"], "pixels_per_cell": 16}},
    "300 classes": lambda c: {**c, "classes": {"names": [f"c{i}" for i in range(300)],
                                               "palette": [[0, 0, 0]] * 300}},
    "palette out of range": lambda c: {**c, "classes": {**c["classes"], "palette": [[0, 0, 0], [300, 0, 0],
                                                                                    [0, 0, -1]]}},
    "short palette entry": lambda c: {**c, "classes": {**c["classes"], "palette": [[0, 0, 0], [1, 2], [3, 4, 5]]}},
    "iterations as a string": lambda c: {**c, "training": {**c["training"], "iterations": "\x1b[2Jmany"}},
    "cost as a list": lambda c: {**c, "cost": [1]},
}


def test_entry_config_round_trips_key_for_key(entry):
    """The typed config gives back the document it was read from: an exported entry, the bundled one, and a
    config from a later version with a section this one does not know."""
    from zoo.entry_config import EntryConfig

    for path in (entry / "config.json", Path(__file__).parents[1] / "zoo/scenes/coins/config.json"):
        assert EntryConfig.read(path).to_json() == path.read_text()
    doc = json.loads((entry / "config.json").read_text()) | {"future": {"x": [1, 2]}}
    config = EntryConfig.from_dict(doc, where="c.json")
    assert config.to_dict() == doc and list(config.to_dict()) == list(doc)
    assert config.training_size == tuple(doc["training"]["size"]) and config.iterations == doc["training"]["iterations"]
    assert config.files["onnx/generator.onnx"].sha256 == doc["files"]["onnx/generator.onnx"]["sha256"]
    assert config.files["onnx/generator.onnx"].details["precision"] == "fp32" and config.precisions()[0] == "fp32"
    with pytest.raises(TypeError):   # frozen all the way down: a reader cannot change what the next one sees
        config.files["x"] = config.files["onnx/generator.onnx"]
    config.to_dict()["files"].clear()
    assert config.files and config.to_dict()["files"]


@pytest.mark.parametrize("damage", sorted(TAMPERED))
def test_tampered_config_is_one_line_in_every_command(entry, tmp_path, damage):
    broken = tmp_path / "e"
    shutil.copytree(entry, broken)
    config = TAMPERED[damage](json.loads((broken / "config.json").read_text()))
    (broken / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for cli, args in ((zoo, ["verify", str(broken)]), (zoo, ["info", str(broken)]),
                      (runtime_cli, ["sample", str(broken), "--out", str(tmp_path / "o"), "--count", "1", "-q"])):
        res = run(*args, cli=cli)
        assert res.exit_code == 1 and res.output.startswith("error: ") and res.output.count("\n") == 1, \
            (damage, args[0], res.output[-300:])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("quality", ['{"score": "patch-frechet-v1", "mean": [NaN], "cov": [[1]]}', "[1, 2]",
                                     '{"score": "patch-frechet-v1", "mean": [1, 2], "cov": [[1]]}'])
def test_verify_refuses_a_broken_quality_reference(entry, tmp_path, quality):
    broken = tmp_path / "e"
    shutil.copytree(entry, broken)
    (broken / "quality.json").write_text(quality)
    _rehash(broken, "quality.json")
    res = run("verify", str(broken))
    assert res.exit_code == 1 and "not a usable quality reference" in res.output, res.output


def _rehash(entry_dir, name):
    cfg = json.loads((entry_dir / "config.json").read_text())
    cfg["files"][name]["sha256"] = sha256_file(entry_dir / name)   # a consistent but broken entry
    (entry_dir / "config.json").write_text(json.dumps(cfg))


def test_a_model_without_the_mask_output_config_promises_is_refused(entry, tmp_path):
    """An ONNX without a mask output wrote metadata pointing at missing masks (issue 12, low)."""
    import onnx

    broken = tmp_path / "broken"
    shutil.copytree(entry, broken)
    path = broken / "onnx/generator.onnx"
    model = onnx.load(str(path))
    keep = [o for o in model.graph.output if o.name != "mask"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(path))
    _rehash(broken, "onnx/generator.onnx")
    for cli, args in ((zoo, ["verify", str(broken)]),
                      (runtime_cli, ["sample", str(broken), "--out", str(tmp_path / "o"), "--count", "2", "-q"])):
        res = run(*args, cli=cli)
        assert res.exit_code == 1 and "mask" in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "o").exists()


def test_verify_runs_the_model(entry, tmp_path):
    import onnx

    broken = tmp_path / "broken"
    shutil.copytree(entry, broken)
    path = broken / "onnx/generator.onnx"
    model = onnx.load(str(path))
    last = next(n for n in reversed(model.graph.node) if n.op_type == "Transpose")
    last.attribute[0].ints[:] = [0, 1, 2, 3]       # image comes out NCHW: loads, runs, wrong shape
    onnx.save(model, str(path))
    _rehash(broken, "onnx/generator.onnx")
    res = run("verify", str(broken))
    assert res.exit_code == 1 and "expected image uint8 (2, 24, 40, 3)" in res.output, res.output
    path.write_bytes(path.read_bytes()[:4000])
    _rehash(broken, "onnx/generator.onnx")
    res = run("verify", str(broken))
    assert res.exit_code == 1 and "not a valid ONNX file" in res.output, res.output


class FakeApi:
    """Stands in for HfApi: records calls and commits into the fake Hub, so the pushed entry can be pulled."""

    def __init__(self, hub, existing=()):
        self.hub, self.calls, self.existing = hub, [], list(existing)

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def list_repo_files(self, repo_id, **kw):
        return [".gitattributes", *self.existing]

    def create_commit(self, repo_id, operations, **kw):
        from huggingface_hub import CommitOperationAdd

        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations
                 if isinstance(op, CommitOperationAdd)}
        deleted = [op.path_in_repo for op in operations if not isinstance(op, CommitOperationAdd)]
        self.calls.append(("create_commit", repo_id, {"files": sorted(files), "deleted": deleted, **kw}))
        return type("CommitInfo", (), {"oid": self.hub.commit(repo_id, files, kw.get("revision") or "main"),
                                       "commit_url": None})()


def test_push_uploads_exactly_the_entry_in_one_commit(hub, entry, tmp_path, monkeypatch):
    import huggingface_hub

    staged = tmp_path / "entry"
    shutil.copytree(entry, staged)
    (staged / "notes.txt").write_text("not part of the entry")
    api = FakeApi(hub, existing=["onnx/generator.int8.onnx"])
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: api)
    res = run("push", str(staged), "--repo", "org/new", "--private", "--revision", "v1", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    expected = sorted(SAMPLING | {"model.safetensors"})
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][2]["private"] is True and api.calls[1][2]["branch"] == "v1"
    commit = api.calls[2][2]
    assert commit["files"] == expected and commit["deleted"] == ["onnx/generator.int8.onnx"]
    assert commit["revision"] == "v1" and data["commit"] == hub.repos["org/new"].refs["v1"]
    hub.index.write_text(json.dumps({"format": "oneshot-gan-index/1", "scenes": json.loads("{" + data["index_line"] + "}")}))
    res = run("pull", "new", "--weights", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["revision"] == data["commit"]


def test_push_refuses_a_broken_entry(entry, tmp_path):
    staged = tmp_path / "entry"
    shutil.copytree(entry, staged)
    (staged / "preview.png").write_bytes(b"x")
    res = run("push", str(staged), "--repo", "org/new")
    assert res.exit_code == 1 and "fails its sha256 check" in res.output
    for name in ("README.md", "config.json"):   # a link to a file outside: its bytes would be uploaded
        linked = tmp_path / f"linked-{name}"
        shutil.copytree(entry, linked)
        outside = tmp_path / f"outside-{name}"
        (linked / name).rename(outside)
        (linked / name).symlink_to(outside)
        res = run("push", str(linked), "--repo", "org/new")
        assert res.exit_code == 1 and f"{name} points outside the entry folder" in res.output, res.output


def test_entry_with_training_state_resumes(run_dir, tmp_path, hub):
    from trainer.cli import main as trainer_cli

    out = tmp_path / "full"
    res = run("export", str(run_dir), "--out", str(out), "--checkpoint", "-q")
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    state = sorted(f for f in cfg["files"] if f.startswith("checkpoint/"))
    assert state == ["checkpoint/checkpoints/ckpt-000000003.safetensors", "checkpoint/config.json",
                     "checkpoint/data.safetensors"]
    hub.commit_folder("org/full", out)
    res = run("pull", "org/full", "--checkpoint", "--json")
    assert res.exit_code == 0, res.output
    assert {f for f in pulled_files(hub) if f.startswith("checkpoint/")} == set(state)
    resumed = tmp_path / "resumed"
    shutil.copytree(Path(json.loads(res.output)["path"]) / "checkpoint", resumed)   # links -> files
    res = CliRunner().invoke(trainer_cli, ["resume", str(resumed), "--iters", "4", "-q"])
    assert res.exit_code == 0, res.output
    assert (resumed / "checkpoints/ckpt-000000004.safetensors").is_file()


def test_verify_refuses_non_standard_operators(entry, tmp_path):
    import onnx

    odd = tmp_path / "odd"
    shutil.copytree(entry, odd)
    path = odd / "onnx/generator.onnx"
    model = onnx.load(str(path))
    model.graph.node[0].domain = "com.example.custom"
    onnx.save(model, str(path))
    _rehash(odd, "onnx/generator.onnx")
    res = run("verify", str(odd))
    assert res.exit_code == 1 and "non-standard operator domains ['com.example.custom']" in res.output


def test_info_never_prints_terminal_control_characters(entry, tmp_path):
    """Titles and class names were printed raw: an escape sequence could rewrite the terminal (issue 12, low)."""
    evil = tmp_path / "e"
    shutil.copytree(entry, evil)
    card = (evil / "README.md").read_text().replace("# ", "# \x1b]0;owned\x07\x1b[2J", 1)
    (evil / "README.md").write_text(card)
    _rehash(evil, "README.md")
    config = json.loads((evil / "config.json").read_text())
    config["classes"]["names"][1] = "stone\x1b[1A\x1b[2K"
    (evil / "config.json").write_text(json.dumps(config))
    for cli, args in ((zoo, ["info", str(evil)]), (runtime_cli, ["info", str(evil)])):
        res = run(*args, cli=cli)
        assert res.exit_code == 0 and "\x1b" not in res.output and "\x07" not in res.output, res.output
        assert "stone?[1A?[2K" in res.output
