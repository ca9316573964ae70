"""What a run leaves on disk: the column schema, the environment, the writers and the results folders."""
