from convbench.cli.main import main

main()
