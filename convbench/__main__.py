from convbench.entry import main

main()
