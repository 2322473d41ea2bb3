"""dcp.save and dcp.load through dcpkv.torch under torchrun on several hosts.

The hosts are Linux network namespaces, as in tests/multihost/network.h: host i has 10.98.0.<i+1>
on its eth0, one end of a veth cable whose other end is a port of a bridge in a switch namespace
of its own (the machine's network is left alone). Each host runs its own torchrun agent
(--nnodes, --node-rank, the agent store on host 0 at MASTER_ADDR), as a job spread over machines
does; the store is a directory every host shares. dcp_worker.py saves DTensor state (Shard(0),
Shard(1), Replicate), an FSDP2 model and optimizer, and THREAD and PROCESS async saves at world
4, then loads them resharded at world 3. Needs root and iproute2 (scripts/install_deps.sh); it
fails with the reason otherwise.
"""

import os
import subprocess
import sys

import pytest

from test_dcp_torchrun import assert_cli_sees_what_dcp_wrote
from test_torchrun import clean_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcp_worker.py")


def sh(cmd):
    run = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    assert run.returncode == 0, f"{cmd!r}: {run.stdout}{run.stderr}"


class Network:
    """Hosts on one switch; deleted on close."""

    def __init__(self, hosts):
        prefix = f"dcpkv-py{os.getpid()}-"
        self.switch = prefix + "switch"
        self.hosts = [f"{prefix}h{i}" for i in range(hosts)]
        self.made = []
        sh(f"ip netns add {self.switch}")
        self.made.append(self.switch)
        sh(f"ip -n {self.switch} link add br0 type bridge")
        sh(f"ip -n {self.switch} link set br0 up")
        for i, ns in enumerate(self.hosts):
            sh(f"ip netns add {ns}")
            self.made.append(ns)
            sh(f"ip link add eth0 netns {ns} type veth peer name port{i} netns {self.switch}")
            sh(f"ip -n {self.switch} link set port{i} master br0 up")
            sh(f"ip -n {ns} addr add {self.addr(i)}/24 dev eth0")
            sh(f"ip -n {ns} link set eth0 up")
            sh(f"ip -n {ns} link set lo up")

    @staticmethod
    def addr(host):
        return f"10.98.0.{host + 1}"

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def remove_stale_namespaces():
    """Deletes the namespaces of earlier runs whose process is gone (killed part-way)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split(" ")[0]
        if not name.startswith("dcpkv-py"):
            continue
        pid = name[len("dcpkv-py"):].split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def network():
    if os.geteuid() != 0:
        pytest.fail("the multi-host test makes network namespaces and needs root")
    remove_stale_namespaces()
    net = Network(4)
    try:
        yield net
    finally:
        net.close()


def torchrun_on_hosts(net, nnodes, port, *args, env=None, timeout=600):
    """One torchrun agent per host 0..nnodes-1; returns (exit codes, outputs)."""
    procs = []
    for node in range(nnodes):
        host_env = dict(clean_env(), **(env or {}))
        # torch's gloo and dcpkv's bind the host's own address, not what its name resolves to.
        host_env["GLOO_SOCKET_IFNAME"] = "eth0"
        host_env["DCPKV_GLOO_HOSTNAME"] = net.addr(node)
        cmd = ["ip", "netns", "exec", net.hosts[node], sys.executable, "-m",
               "torch.distributed.run", f"--nnodes={nnodes}", f"--node-rank={node}",
               "--nproc-per-node=1", f"--master-addr={net.addr(0)}", f"--master-port={port}",
               "--max-restarts=0", WORKER, *args]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=host_env))
    outputs, codes = [], []
    for node, p in enumerate(procs):
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            out, _ = p.communicate()
        outputs.append(out)
        codes.append(p.returncode)
        print(f"--- host {node} (exit {p.returncode}):\n{out[-4000:]}")
    return codes, outputs


def test_dcp_saved_by_torchrun_on_4_hosts_loads_resharded_on_3(network, tmp_path):
    root = str(tmp_path / "store")
    fs_dir = str(tmp_path / "fs")
    os.makedirs(fs_dir)
    codes, outputs = torchrun_on_hosts(network, 4, 29610, "save", root, fs_dir)
    assert codes == [0] * 4
    assert sum(o.count("save ok") for o in outputs) == 4
    codes, outputs = torchrun_on_hosts(network, 3, 29611, "load", root, fs_dir,
                                       env={"DCP_WORKER_FSDP": "0"})
    assert codes == [0] * 3
    assert sum(o.count("load ok") for o in outputs) == 3
    assert_cli_sees_what_dcp_wrote(root)
