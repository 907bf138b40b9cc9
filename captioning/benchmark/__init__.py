"""``captioning benchmark``: throughput of training and decoding against the machine's matmul rate and a
plain baseline, memory of full vs truncated BPTT, and end-to-end captioning (see the README's performance
section)."""
