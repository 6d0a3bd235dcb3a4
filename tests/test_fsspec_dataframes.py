"""pandas and pyarrow on sage:// URLs against a real `sagestore serve` process: read_parquet,
to_parquet, read_csv and to_csv with storage_options, a pyarrow dataset over a folder of Parquet
files (partition filter, column selection: the bytes the server sent are counted in /metrics and
compared with the files' size), and a public bucket read with no token."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import requests

from sagestore.client import Client
from sagestore.client.fs import SageFileSystem

ROWS = 65_536  # 512 KiB per float64 column
TAIL = 64 * 1024  # what a footer read fetches (the file's last 64 KiB)


def sent_bytes(served) -> float:
    text = requests.get(served.url + "/metrics", timeout=30).text
    return float(re.search(r"^sagestore_downloaded_bytes_total (\S+)$", text, re.M).group(1))


@pytest.fixture(scope="module")
def options(served):
    return {"endpoint": served.url, "token": served.token("alice")}


@pytest.fixture(scope="module")
def bucket(served):
    with Client(served.url, served.token("alice")) as alice:
        return alice.create_bucket("training-data", "dataframes")["id"]


def column_bytes(fs: SageFileSystem, path: str, name: str) -> int:
    """The stored (compressed) size of one column's chunks in a Parquet file."""
    with fs.open(path, "rb") as f:
        meta = pq.ParquetFile(f).metadata
    index = meta.schema.names.index(name)
    return sum(meta.row_group(g).column(index).total_compressed_size for g in range(meta.num_row_groups))


def frame(seed: int, rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(rows), **{f"c{i}": rng.random(rows) for i in range(3)}})


def test_pandas_parquet_and_csv_round_trips(bucket, options, served):
    df = frame(1)
    url = f"sage://{bucket}/pandas/train.parquet"
    df.to_parquet(url, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options), df)
    fs = SageFileSystem(**options, skip_instance_cache=True)
    size, column = fs.size(url), column_bytes(fs, url, "c1")
    before = sent_bytes(served)
    one = pd.read_parquet(url, columns=["c1"], storage_options=options)
    fetched = sent_bytes(served) - before
    pd.testing.assert_series_equal(one["c1"], df["c1"])
    print(f"\npandas read_parquet of 1 column of 4: {fetched:.0f} bytes of {size} (the column: {column})")
    assert fetched <= column + TAIL, (fetched, column)  # the column, and the footer with the file's tail
    csv = f"sage://{bucket}/pandas/train.csv"
    df.head(1000).to_csv(csv, index=False, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_csv(csv, storage_options=options), df.head(1000))
    chunks = pd.read_csv(csv, chunksize=100, storage_options=options)
    assert sum(len(chunk) for chunk in chunks) == 1000


def test_a_pyarrow_dataset_reads_only_the_partitions_and_columns_it_needs(bucket, options, served):
    fs = SageFileSystem(**options, skip_instance_cache=True)
    for part in range(4):
        table = pa.Table.from_pandas(frame(10 + part), preserve_index=False)
        with fs.open(f"{bucket}/dataset/part={part}/data.parquet", "wb") as f:
            pq.write_table(table, f, row_group_size=ROWS // 2, compression="none")
    sizes = {path: fs.size(path) for path in fs.find(f"{bucket}/dataset")}
    assert len(sizes) == 4
    dataset = ds.dataset(f"{bucket}/dataset", filesystem=fs, format="parquet", partitioning="hive")
    before = sent_bytes(served)
    table = dataset.to_table(columns=["c2"], filter=ds.field("part") == 2)
    fetched = sent_bytes(served) - before
    assert table.column("c2").to_numpy().tolist() == frame(12)["c2"].tolist()
    column = column_bytes(fs, f"{bucket}/dataset/part=2/data.parquet", "c2")
    print(f"\npyarrow dataset, 1 partition of 4, 1 column of 4: {fetched:.0f} bytes of {sum(sizes.values())} "
          f"(the column in that partition: {column})")
    assert fetched <= column + TAIL, (fetched, column)
    before = sent_bytes(served)
    rows = dataset.to_table(columns=["id", "c0"], filter=ds.field("c0") > 0.99)  # a filter on values
    fetched = sent_bytes(served) - before
    assert 0 < rows.num_rows < 4 * ROWS // 50 and all(v > 0.99 for v in rows.column("c0").to_pylist())
    columns = sum(column_bytes(fs, path, name) for path in sizes for name in ("id", "c0"))
    print(f"pyarrow dataset, all partitions, 2 columns of 4 filtered on c0: {fetched:.0f} bytes of "
          f"{sum(sizes.values())} (the 2 columns: {columns})")
    assert fetched <= columns + 4 * TAIL, (fetched, columns)


def test_a_public_bucket_reads_with_no_token(served, monkeypatch):
    for name in ("SAGESTORE_TOKEN", "SAGE_USER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with Client(served.url, served.token("alice")) as alice:
        public = alice.create_bucket("training-data", "open-data", public=True)["id"]
    df = frame(3, rows=1000)
    df.to_parquet(f"sage://{public}/open.parquet", storage_options={"endpoint": served.url,
                                                                    "token": served.token("alice")})
    anonymous = {"endpoint": served.url}
    pd.testing.assert_frame_equal(pd.read_parquet(f"sage://{public}/open.parquet", storage_options=anonymous), df)
    with pytest.raises(PermissionError):
        df.to_parquet(f"sage://{public}/mine.parquet", storage_options=anonymous)
