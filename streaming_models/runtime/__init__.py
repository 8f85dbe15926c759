"""The runtime floor: what running an exported detector needs, and nothing else."""
