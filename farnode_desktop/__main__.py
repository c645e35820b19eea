from farnode_desktop.cli import main

raise SystemExit(main())
