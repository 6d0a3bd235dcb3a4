"""Opt-in (torch is not in the test extra; it is GBs): torch.distributed.checkpoint saves and loads
a model and its optimizer through FsspecWriter/FsspecReader on sage://, and a DataLoader's worker
processes read sage:// files through a filesystem object they got from the parent. Run it with

    pip install torch==2.13.0   # a CPU build
    python -m pytest -p no:cacheprovider tests/torch_checkpoint.py

(the file is not named test_*.py, so the default run never collects it)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.utils.data import DataLoader, Dataset

from sagestore.client import Client
from sagestore.client.fs import SageFileSystem



@pytest.fixture(scope="module")
def bucket(served):
    with Client(served.url, served.token("alice")) as alice:
        return alice.create_bucket("model", "torch-checkpoints")["id"]


def model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(torch.randn(32, 64)).square().mean()
    loss.backward()
    optimizer.step()  # the optimizer has state (exp_avg, exp_avg_sq) to save
    return model, optimizer


def test_distributed_checkpoint_save_and_load_through_sage(served, bucket):
    options = {"endpoint": served.url, "token": served.token("alice")}
    checkpoint = f"sage://{bucket}/run-1/step-100"
    model, optimizer = model_and_optimizer(seed=1)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    # sync_files: torch would fsync a local file; a sage:// file is durable once its upload is acknowledged
    dcp.save(state, storage_writer=FsspecWriter(checkpoint, sync_files=False, **options))

    fs = SageFileSystem(**options, skip_instance_cache=True)
    names = sorted(name.rsplit("/", 1)[-1] for name in fs.ls(checkpoint, detail=False))
    assert ".metadata" in names and any(name.endswith(".distcp") for name in names), names
    assert not any(name.endswith(".tmp") for name in names), names  # renamed into place

    fresh, fresh_optimizer = model_and_optimizer(seed=2)
    target = {"model": fresh.state_dict(), "optimizer": fresh_optimizer.state_dict()}
    dcp.load(target, storage_reader=FsspecReader(checkpoint, **options))
    fresh.load_state_dict(target["model"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name]), name
    saved_moments = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(target["optimizer"]["state"][0]["exp_avg"], saved_moments)


class SageShards(Dataset):
    """Tensors saved one per file on sage://; the filesystem object travels to the workers."""

    def __init__(self, fs: SageFileSystem, paths: list[str]) -> None:
        self.fs, self.paths = fs, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with self.fs.open(self.paths[index], "rb") as f:
            return torch.load(f)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_dataloader_workers_read_sage_files(served, bucket, start):
    fs = SageFileSystem(served.url, served.token("alice"), skip_instance_cache=True)
    paths = []
    for number in range(6):
        path = f"{bucket}/shards/{number}.pt"
        with fs.open(path, "wb") as f:
            torch.save(torch.full((4,), float(number)), f)
        paths.append(path)
    fs.ls(f"{bucket}/shards")  # the parent has used its filesystem (and its event loop) before the fork
    loader = DataLoader(SageShards(fs, paths), batch_size=2, num_workers=2, multiprocessing_context=start)
    batches = [batch for batch in loader]
    assert torch.equal(torch.cat(batches)[:, 0], torch.arange(6, dtype=torch.float32))
