"""`convbench selfcheck`: can the numbers be trusted on this machine? A battery of checks of the machine and of
convbench's own protocols (timing, memory, counting, modes, isolation, training), each with the figure it
measured and the tolerance it held it to. A check that raises becomes a `fail` with the error, and the battery
goes on; on a GPU one call exercises every CUDA path convbench has."""
