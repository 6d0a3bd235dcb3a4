"""What the tests share: the one `sagestore serve` launcher (server.py), in-process apps
(apps.py), data and request helpers (data.py), process checks (processes.py) and private
temporary dirs (tmp.py). Fixtures live in tests/conftest.py and are built from these."""
