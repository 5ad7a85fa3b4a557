from learning_tangle.cli import main

main()
