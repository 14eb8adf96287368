"""What the FTP push relies on survives a power cut: the kept copies and the stamps it orders by."""
from __future__ import annotations

from cutmount import cutfs  # noqa: F401 (fixture)
from test_ftp import push, run_push, servers  # noqa: F401 (fixture)

from edge_agent.config import load_site
from edge_agent.forward.ftp import pending_files
from edge_agent.fsutil import make_dirs, replace_file
from edge_agent.profile import load_profile
from edge_agent.profile.textfile import write_text_file
from test_textfile import GOLDEN, T0, TZ


def test_kept_uploads_survive_a_cut(tmp_path, cutfs, servers):  # noqa: F811
    outbox = cutfs.root / "outbox"
    make_dirs(outbox)
    names = [f"140211001234_CDSS_2026112910000{i}.txt" for i in range(3)]
    for i, name in enumerate(names):
        replace_file(outbox / name, b"x" * (100 + i) + b"||")      # durable, as the file sink writes them
    srv = servers(tmp_path / "server", outbox)
    p = push(cutfs.root, srv.port, directory="", keep_uploaded=True)
    run_push(p, lambda: len(pending_files(outbox)) == 0)
    cutfs.cut()
    kept = outbox / "uploaded"
    assert kept.is_dir(), "the uploaded/ folder vanished at the cut with every kept copy"
    # every copy is in uploaded/; the moves out of the outbox were not synced, so those files may
    # also be back in the outbox, to be uploaded again (at-least-once)
    assert sorted(q.name for q in kept.iterdir()) == names
    assert sorted(q.name for q in srv.root.iterdir()) == names


def test_the_upload_order_stamp_of_a_spec_file_survives_a_cut(cutfs):
    """The push uploads in mtime order; the writer's stamp must be durable with the file."""
    site = load_site(GOLDEN / "site.yaml")
    recs = [{"substation_code": "001", "run_status": 0, "power_status": 1, "time": "2026-11-29 10:00:20"}]
    make_dirs(cutfs.root / "outbox")
    path = write_text_file(load_profile(site.profile), site, "FZSS", T0, recs, cutfs.root / "outbox", tz=TZ,
                           mtime_ns=1_000_000_007)
    cutfs.cut()
    assert path.stat().st_mtime_ns == 1_000_000_007
