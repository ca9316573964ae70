"""Running sweeps: configs, the one sweep runner and its three plug-ins (profile, compare, train), rows, the
settings a measuring process applies, modes, isolation, shards and the engines that start them."""
