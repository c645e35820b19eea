; Inno Setup 6 script: installer for the Windows build of FarNode Desktop.
;
; Build on Windows (not done on Linux CI):
;   1. In the GUI environment (.venv, no torch):  python -m PyInstaller --noconfirm packaging\farnode.spec
;      -> dist\farnode-desktop\farnode-desktop.exe and dist\farnode-desktop\_internal\ (with engine_src\)
;   2. "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\farnode.iss
;      -> dist\FarNode-Desktop-Setup-0.1.0.exe
;
; The engine does not run on Windows itself: the app runs it inside WSL2 (core/node/runtimes/wsl.py) and sets it
; up there on first start (an Ubuntu distribution, Python, the engine's locked packages with CUDA torch).
; This installer only checks that WSL2 can work and says what to do when it cannot; installing WSL needs
; administrator rights and a restart, which the user confirms (the optional task below runs
; `wsl.exe --install --no-distribution`). The NVIDIA driver on Windows provides CUDA inside WSL2.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "FarNode Desktop"
#define AppExe "farnode-desktop.exe"
#define BundleDir "..\..\dist\farnode-desktop"

[Setup]
AppId={{6B0F1C52-6A3E-4D61-9C5B-3F1E2A7D9B40}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=FarNode
DefaultDirName={autopf}\FarNode Desktop
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
OutputDir=..\..\dist
OutputBaseFilename=FarNode-Desktop-Setup-{#AppVersion}
SetupIconFile=..\..\resources\icons\app\farnode-desktop.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; WSL2 needs Windows 10 version 2004 (build 19041) or later.
MinVersion=10.0.19041
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"
Name: "startup"; Description: "Start {#AppName} in the tray when I log in"; Flags: unchecked
Name: "installwsl"; Description: "Install WSL2 now (administrator rights and a restart are needed)"; Check: not WslWorks

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "gui"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "gui"; Tasks: desktopicon
Name: "{userstartup}\{#AppName}"; Filename: "{app}\{#AppExe}"; Parameters: "gui --minimized"; Tasks: startup

[Run]
Filename: "{sys}\wsl.exe"; Parameters: "--install --no-distribution"; Flags: runascurrentuser waituntilterminated shellexec; Verb: "runas"; StatusMsg: "Installing WSL2 ..."; Tasks: installwsl
Filename: "{app}\{#AppExe}"; Parameters: "gui"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop a running node (its engine runs inside WSL) before the files go away.
Filename: "{sys}\wsl.exe"; Parameters: "-d Ubuntu -u root --exec pkill -INT -f farnode_desktop.engine.launcher"; Flags: runhidden skipifdoesntexist; RunOnceId: "StopEngine"

[Code]
{ True when `wsl.exe --status` runs and exits 0: WSL2 is installed and enabled. wsl.exe exists on every
  Windows 10/11 as a stub that prints "not installed" and fails, so its presence alone proves nothing. }
function WslWorks(): Boolean;
var
  Code: Integer;
begin
  Result := False;
  if not FileExists(ExpandConstant('{sys}\wsl.exe')) then
    Exit;
  if Exec(ExpandConstant('{sys}\wsl.exe'), '--status', '', SW_HIDE, ewWaitUntilTerminated, Code) then
    Result := (Code = 0);
end;

procedure CurPageChanged(CurPageID: Integer);
begin
  if (CurPageID = wpSelectTasks) and not WslWorks() then
    MsgBox('FarNode Desktop runs its engine inside WSL2 (the Windows Subsystem for Linux), which is not ' +
      'installed or not enabled on this computer.' + #13#10#13#10 +
      'Tick "Install WSL2 now" on this page, or later open PowerShell as administrator and run:' + #13#10 +
      '    wsl --install --no-distribution' + #13#10 +
      'then restart Windows. FarNode sets up the rest (an Ubuntu distribution and the engine) on its ' +
      'first start. An NVIDIA driver from 2021 or newer is needed for the GPU inside WSL2.',
      mbInformation, MB_OK);
end;
