//! The ECI actions vnode uses and their documented per-minute quotas.

/// An ECI OpenAPI action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `CreateContainerGroup`.
    CreateContainerGroup,
    /// `DescribeContainerGroups`.
    DescribeContainerGroups,
    /// `DescribeContainerGroupStatus`.
    DescribeContainerGroupStatus,
    /// `DeleteContainerGroup`.
    DeleteContainerGroup,
    /// `DescribeContainerLog`.
    DescribeContainerLog,
    /// `ExecContainerCommand`.
    ExecContainerCommand,
    /// `DescribeContainerGroupMetric`.
    DescribeContainerGroupMetric,
    /// `UpdateContainerGroup`.
    UpdateContainerGroup,
    /// `RestartContainerGroup`.
    RestartContainerGroup,
    /// `DescribeContainerGroupPrice`.
    DescribeContainerGroupPrice,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 10] = [
        Action::CreateContainerGroup,
        Action::DescribeContainerGroups,
        Action::DescribeContainerGroupStatus,
        Action::DeleteContainerGroup,
        Action::DescribeContainerLog,
        Action::ExecContainerCommand,
        Action::DescribeContainerGroupMetric,
        Action::UpdateContainerGroup,
        Action::RestartContainerGroup,
        Action::DescribeContainerGroupPrice,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateContainerGroup => "CreateContainerGroup",
            Action::DescribeContainerGroups => "DescribeContainerGroups",
            Action::DescribeContainerGroupStatus => "DescribeContainerGroupStatus",
            Action::DeleteContainerGroup => "DeleteContainerGroup",
            Action::DescribeContainerLog => "DescribeContainerLog",
            Action::ExecContainerCommand => "ExecContainerCommand",
            Action::DescribeContainerGroupMetric => "DescribeContainerGroupMetric",
            Action::UpdateContainerGroup => "UpdateContainerGroup",
            Action::RestartContainerGroup => "RestartContainerGroup",
            Action::DescribeContainerGroupPrice => "DescribeContainerGroupPrice",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The documented per-account quota in calls per minute (ECI "Limits").
    /// `DescribeContainerGroupStatus` is not in the published table; it is given the
    /// `DescribeContainerGroups` figure.
    pub fn documented_quota_per_minute(self) -> u32 {
        match self {
            Action::DescribeContainerGroups | Action::DescribeContainerGroupMetric => 2000,
            Action::DescribeContainerGroupStatus => 2000,
            Action::CreateContainerGroup
            | Action::DeleteContainerGroup
            | Action::DescribeContainerGroupPrice => 1000,
            Action::ExecContainerCommand
            | Action::DescribeContainerLog
            | Action::RestartContainerGroup
            | Action::UpdateContainerGroup => 500,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
