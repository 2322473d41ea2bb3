"""torch's c10d TCPStore server, as torchrun's elastic agent runs it, for dcpkv's tests.

Prints the port it listens on (127.0.0.1), after setting the key "torch-key" from torch's own
client; serves until its standard input closes.
"""
import sys

import torch
import torch.distributed as dist

store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
store.set("torch-key", "set by torch " + torch.__version__)
print(store.port, flush=True)
sys.stdin.read()
