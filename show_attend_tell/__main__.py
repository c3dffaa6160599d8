from show_attend_tell.cli import main

main()
