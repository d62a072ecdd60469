from project.runs.table import main

main()
