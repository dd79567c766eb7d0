"""Ordinary calls of a third-party Proxmox client (proxmoxer, from PyPI) against steward-pve-sim.

Run by `cargo xtask interop`, which starts the simulator binary and passes PORT, NODE, and the
tokens in the environment. Every assertion states what a real Proxmox VE 9.1 node answers; the
script is written against proxmoxer's public API, unchanged for the simulator (TLS verification
is off because the simulator's certificate is self-signed and made at start, on loopback only).
"""
import os
import sys
import time

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

PORT = int(os.environ["PORT"])
NODE = os.environ["NODE"]


def api(token_env):
    user_token, secret = os.environ[token_env].split("=", 1)
    user, token = user_token.split("!", 1)
    return ProxmoxAPI("127.0.0.1", port=PORT, user=user, token_name=token,
                      token_value=secret, verify_ssl=False, service="PVE", timeout=10)


def wait(px, upid, limit=20.0):
    end = time.time() + limit
    while time.time() < end:
        st = px.nodes(NODE).tasks(upid).status.get()
        if st["status"] == "stopped":
            return st
        time.sleep(0.05)
    raise AssertionError(f"task {upid} still running")


def expect_error(fn, status, text):
    try:
        fn()
    except ResourceException as e:
        assert e.status_code == status, (e.status_code, e.status_message, e.content)
        assert text in f"{e.status_message} {e.content} {e.errors}", (text, str(e))
        return
    raise AssertionError(f"expected HTTP {status} ({text})")


checks = 0


def check(cond, what):
    global checks
    assert cond, what
    checks += 1


px = api("ADMIN_TOKEN")

# connect
v = px.version.get()
check(v["release"].count(".") == 1 and "version" in v, "version answers release x.y and version")
check([n["node"] for n in px.nodes.get()] == [NODE], "one node")
check(px.cluster.nextid.get() is not None, "nextid answers")

# list
vms = px.nodes(NODE).qemu.get()
cts = px.nodes(NODE).lxc.get()
check(len(vms) > 0 and len(cts) > 0, "both lists hold guests")
check(all(isinstance(g["maxmem"], int) for g in vms), "maxmem is bytes, an integer")
resources = px.cluster.resources.get(type="vm")
check(len(resources) == len(vms) + len(cts), "cluster resources list every guest")

# read config, change it with the digest, a stale digest is refused
vm = px.nodes(NODE).qemu(101)
cfg = vm.config.get()
check(len(cfg["digest"]) == 40, "config carries a 40-hex digest")
check(vm.config.put(cores=3, digest=cfg["digest"]) is None, "a synchronous config write answers null")
check(vm.config.get()["cores"] == 3, "cores reads back as a number")
expect_error(lambda: vm.config.put(cores=4, digest=cfg["digest"]), 500, "checksum mismatch")
checks += 1
expect_error(lambda: vm.config.put(bogus=1), 400, "bogus")
checks += 1

# start and wait for the task
upid = vm.status.start.post()
check(upid.startswith(f"UPID:{NODE}:") and ":qmstart:101:" in upid, "start answers a UPID")
st = wait(px, upid)
check(st["exitstatus"] == "OK", "the start task ends OK")
check(vm.status.current.get()["status"] == "running", "the VM runs")

# snapshot
upid = vm.snapshot.post(snapname="before")
check(wait(px, upid)["exitstatus"] == "OK", "snapshot task OK")
names = [s["name"] for s in vm.snapshot.get()]
check("before" in names and "current" in names, "snapshot list holds it and current")

# a read-only token changes nothing
ro = api("AUDIT_TOKEN")
check(len(ro.nodes(NODE).qemu.get()) == len(vms), "the auditor sees every VM")
expect_error(lambda: ro.nodes(NODE).qemu(101).status.stop.post(), 403, "VM.PowerMgmt")
checks += 1

# destroy
victim = px.nodes(NODE).qemu(103)
upid = victim.delete(purge=1)
check(wait(px, upid)["exitstatus"] == "OK", "destroy task OK")
expect_error(lambda: victim.config.get(), 500, "does not exist")
checks += 1

tasks = px.nodes(NODE).tasks.get(source="all", vmid=101)
check(all(t["id"] == "101" for t in tasks) and len(tasks) >= 2, "the task list filters by vmid")

print(f"proxmoxer: {checks} checks passed against steward-pve-sim")
sys.exit(0)
