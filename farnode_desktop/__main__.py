from farnode_desktop.app.cli import main

raise SystemExit(main())
