package plugin

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// credentials resolves the `user` and `group` of an `isolation process` app
// into what its processes are started with: the kernel switches the child to
// them before it runs a line of the binary (SysProcAttr.Credential: setgroups,
// setgid, setuid, then exec), so the app is imported as that user. It also
// gives the environment entries that name the user (HOME, USER, LOGNAME).
func credentials(userName, groupName string) (*syscall.Credential, []string, error) {
	if userName == "" && groupName == "" {
		return nil, nil, nil
	}
	cred := &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid())}
	var env []string
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return nil, nil, err
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
		// The user's own supplementary groups, not Caddy's.
		ids, _ := u.GroupIds()
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
		if cred.Groups == nil {
			cred.Groups = []uint32{}
		}
		env = append(env, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	} else {
		cred.Groups = []uint32{} // Caddy's supplementary groups are not passed on
	}
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return nil, nil, err
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(gid)
	}
	if os.Geteuid() != 0 {
		if cred.Uid != uint32(os.Geteuid()) || cred.Gid != uint32(os.Getegid()) {
			return nil, nil, fmt.Errorf("user and group need Caddy to run as root, which it does not (uid %d): "+
				"only root can start a process as another user", os.Geteuid())
		}
		// The same user and group: nothing to change, and setgroups would be refused.
		cred.Groups, cred.NoSetGroups = nil, true
	}
	return cred, env, nil
}

func lookupUser(name string) (*user.User, error) {
	return lookupID("user", name, user.Lookup, user.LookupId)
}

func lookupGroup(name string) (*user.Group, error) {
	return lookupID("group", name, user.LookupGroup, user.LookupGroupId)
}

// lookupID finds a user or group by name, else by its number.
func lookupID[T any](kind, name string, byName, byID func(string) (T, error)) (T, error) {
	found, err := byName(name)
	if err != nil {
		if _, numeric := strconv.ParseUint(name, 10, 32); numeric == nil {
			found, err = byID(name)
		}
	}
	if err != nil {
		var none T
		return none, fmt.Errorf("%s %s: no such %s on this machine (%v)", kind, name, kind, err)
	}
	return found, nil
}
