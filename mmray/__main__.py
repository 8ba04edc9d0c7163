from mmray.cli import main

raise SystemExit(main())
